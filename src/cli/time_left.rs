use chrono::Duration;

/// Time left in kubeadm's style: the largest two units (`364d`, `9y 364d`,
/// `23h 59m`, `<invalid>` once expired).
pub fn format_time_left(d: Duration) -> String {
    if d <= Duration::zero() {
        return "<invalid>".to_string();
    }
    let minutes = d.num_minutes();
    let (y, rem) = (minutes / (365 * 24 * 60), minutes % (365 * 24 * 60));
    let (days, rem) = (rem / (24 * 60), rem % (24 * 60));
    let (h, m) = (rem / 60, rem % 60);
    let parts: Vec<String> = [(y, "y"), (days, "d"), (h, "h"), (m, "m")]
        .into_iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        format!("{}s", d.num_seconds())
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kubeadm() {
        assert_eq!(format_time_left(Duration::days(364)), "364d");
        assert_eq!(format_time_left(Duration::days(3650)), "10y");
        assert_eq!(format_time_left(Duration::days(400)), "1y 35d");
        assert_eq!(format_time_left(Duration::hours(26)), "1d 2h");
        assert_eq!(format_time_left(Duration::minutes(90)), "1h 30m");
        assert_eq!(format_time_left(Duration::seconds(42)), "42s");
        assert_eq!(format_time_left(Duration::seconds(-1)), "<invalid>");
    }
}

use std::io::Write;

use super::CliError;

/// Writes every CRD as a YAML document; `crds/` holds exactly this output.
pub fn print_crds(out: &mut impl Write) -> Result<(), CliError> {
    out.write_all(render_crds()?.as_bytes())
        .map_err(CliError::Stdout)
}

pub fn render_crds() -> Result<String, CliError> {
    let mut text = String::new();
    for crd in crate::api::crds() {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(&crd).map_err(|e| CliError::Yaml(e.to_string()))?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crds_directory_is_current() {
        let generated = super::render_crds().expect("render");
        let committed = include_str!("../../crds/certop-crds.yaml");
        assert!(
            generated == committed,
            "crds/certop-crds.yaml is stale: run `make crds` (cargo run -- crd > crds/certop-crds.yaml)"
        );
    }

    /// kube-apiserver warns on every write of an object whose schema has a
    /// format it does not know (kubectl prints `unrecognized format
    /// "uint32"`): the schemas keep to the formats it validates.
    #[test]
    fn every_schema_format_is_one_kube_apiserver_knows() {
        let generated = super::render_crds().expect("render");
        let known = ["int32", "int64", "date-time", "byte", "double", "float"];
        for line in generated.lines() {
            if let Some(format) = line.trim().strip_prefix("format: ") {
                assert!(known.contains(&format), "unknown schema format {format:?}");
            }
        }
    }
}

//! Lists read page by page, so that a large kind is never held whole: the
//! one home of the step from a page to the next, which every paged list
//! of certop (ledger shards, Nodes, the storage rewrites) takes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;

/// The parameters that read the page after `page` (its continue token, so
/// all pages are one snapshot), or None after the last page.
pub fn next(params: &ListParams, page: &ListMeta) -> Option<ListParams> {
    page.continue_
        .as_deref()
        .filter(|token| !token.is_empty())
        .map(|token| params.clone().continue_token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_a_token_leads_to_the_next_and_the_last_ends() {
        let params = ListParams::default().limit(16);
        let more = ListMeta {
            continue_: Some("t1".into()),
            ..Default::default()
        };
        let next_params = next(&params, &more).expect("a next page");
        assert_eq!(next_params.continue_token.as_deref(), Some("t1"));
        assert_eq!(next_params.limit, Some(16));
        for last in [None, Some(String::new())] {
            let meta = ListMeta {
                continue_: last,
                ..Default::default()
            };
            assert!(next(&params, &meta).is_none());
        }
    }
}

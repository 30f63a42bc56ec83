//! The dashboard at `GET /` (SPEC §15): one page built into the binary, its
//! HTML, CSS and script inline (the files under `admin/dashboard/`), with no
//! external asset, that follows `GET /overview/stream` and updates live.
//!
//! With a token set, `GET /` without a valid `Authorization: Bearer` answers
//! 401 with a small sign-in page: it asks for the token once, keeps it in the
//! tab's `sessionStorage`, fetches `/` again with it and writes the dashboard
//! in its place; the dashboard then sends it on every request. Both pages
//! carry one strict `Content-Security-Policy` that allows exactly their
//! inline script and style (by SHA-256), same-origin `fetch` and nothing
//! else, so a page cannot be framed, load a remote asset or post a form.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The dashboard's HTML, with `/*STYLE*/` and `/*SCRIPT*/` to fill.
const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// The sign-in page's HTML, with the same two places to fill.
const LOGIN_HTML: &str = include_str!("dashboard/login.html");
/// The style both pages share.
const STYLE: &str = include_str!("dashboard/style.css");
/// The dashboard's script.
const APP_JS: &str = include_str!("dashboard/app.js");
/// The sign-in page's script.
const LOGIN_JS: &str = include_str!("dashboard/login.js");

/// The two pages as served, and the policy they share.
struct Pages {
    dashboard: String,
    login: String,
    policy: String,
}

static PAGES: LazyLock<Pages> = LazyLock::new(|| {
    Pages::build(&Sources {
        index: INDEX_HTML,
        login: LOGIN_HTML,
        style: STYLE,
        app: APP_JS,
        login_js: LOGIN_JS,
    })
});

/// The texts the pages are made of.
struct Sources<'a> {
    index: &'a str,
    login: &'a str,
    style: &'a str,
    app: &'a str,
    login_js: &'a str,
}

impl Pages {
    /// Both pages and their policy, from `src` with its line ends made `\n`
    /// first (a CRLF checkout must serve what the hashes allow).
    fn build(src: &Sources<'_>) -> Pages {
        let (style, app, login_js) = (lf(src.style), lf(src.app), lf(src.login_js));
        Pages {
            dashboard: fill(&lf(src.index), &style, &app),
            login: fill(&lf(src.login), &style, &login_js),
            policy: policy(&[&app, &login_js], &[&style]),
        }
    }
}

/// `text` with every `\r\n` and lone `\r` made `\n`, as a browser reads an
/// inline block before hashing it (HTML's input stream preprocessing).
fn lf(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `html` with its style and script placeholders replaced.
fn fill(html: &str, style: &str, script: &str) -> String {
    html.replacen("/*STYLE*/", style, 1)
        .replacen("/*SCRIPT*/", script, 1)
}

/// The CSP source expression allowing an inline block whose text is `body`.
fn hash_source(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The Content-Security-Policy allowing exactly `scripts` and `styles`
/// inline, `fetch` to this origin, and the blank icon; nothing else. The
/// sign-in page writes the dashboard into its own document, which keeps the
/// sign-in page's policy: so one policy names both pages' scripts.
fn policy(scripts: &[&str], styles: &[&str]) -> String {
    let list = |blocks: &[&str]| {
        blocks
            .iter()
            .map(|b| hash_source(b))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        list(scripts),
        list(styles)
    )
}

/// `body` as an HTML answer with `status` and the page's security headers.
fn html(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&PAGES.policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /`: the dashboard (the token, when set, was checked on the way).
pub(super) async fn page() -> Response {
    html(StatusCode::OK, &PAGES.dashboard)
}

/// The 401 sign-in page the token check answers `GET /` with (SPEC §15).
pub(super) fn sign_in_page() -> Response {
    html(StatusCode::UNAUTHORIZED, &PAGES.login)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every `<open …>…</close>` block in `html`.
    fn blocks<'a>(html: &'a str, open: &str, close: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find(open) {
            let after = &rest[start..];
            let body_start = after.find('>').expect("a closed tag") + 1;
            let end = after.find(close).expect("a closing tag");
            out.push(&after[body_start..end]);
            rest = &after[end + close.len()..];
        }
        out
    }

    #[test]
    fn every_inline_block_is_allowed_by_the_policy_and_nothing_else_is() {
        for page in [&PAGES.dashboard, &PAGES.login] {
            assert!(!page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/"));
            let scripts = blocks(page, "<script", "</script>");
            let styles = blocks(page, "<style", "</style>");
            assert_eq!((scripts.len(), styles.len()), (1, 1));
            for block in scripts.iter().chain(&styles) {
                assert!(PAGES.policy.contains(&hash_source(block)), "{block:.60}");
            }
        }
        assert!(PAGES.policy.starts_with("default-src 'none'; "));
        assert!(!PAGES.policy.contains("unsafe"), "{}", PAGES.policy);
        assert!(PAGES.policy.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn a_crlf_checkout_serves_lf_pages_under_the_same_policy() {
        let crlf = |s: &str| s.replace('\n', "\r\n");
        let (index, login, style, app, login_js) = (
            crlf(INDEX_HTML),
            crlf(LOGIN_HTML),
            crlf(STYLE),
            crlf(APP_JS),
            crlf(LOGIN_JS),
        );
        assert!(app.contains("\r\n"));
        let pages = Pages::build(&Sources {
            index: &index,
            login: &login,
            style: &style,
            app: &app,
            login_js: &login_js,
        });
        assert_eq!(pages.policy, PAGES.policy);
        assert_eq!(pages.dashboard, PAGES.dashboard);
        assert_eq!(pages.login, PAGES.login);
        assert!(!pages.dashboard.contains('\r') && !pages.login.contains('\r'));
        // A browser hashes `a\r\nb` and `a\rb` as `a\nb`.
        assert_eq!(lf("a\r\nb\rc"), "a\nb\nc");
        let one = policy(&["x\r\ny"], &[]);
        assert!(!one.contains(&hash_source("x\ny")), "{one}");
        let pages = Pages::build(&Sources {
            index: "<script>/*SCRIPT*/</script><style>/*STYLE*/</style>",
            login: "",
            style: "",
            app: "x\r\ny",
            login_js: "",
        });
        assert!(
            pages.policy.contains(&hash_source("x\ny")),
            "{}",
            pages.policy
        );
    }

    #[test]
    fn the_token_field_is_not_one_a_password_manager_keeps() {
        let input = PAGES
            .login
            .split("<input")
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .expect("the token field");
        assert!(input.contains("id=\"token\""), "{input}");
        assert!(input.contains("autocomplete=\"one-time-code\""), "{input}");
    }

    #[test]
    fn a_hash_source_is_the_base64_sha256_of_the_text() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            hash_source("alert(1)"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
    }

    #[test]
    fn the_pages_name_no_remote_url_and_set_no_html_from_data() {
        for page in [&PAGES.dashboard, &PAGES.login] {
            let lower = page.to_lowercase();
            assert!(!lower.contains("http://") && !lower.contains("https://"));
            assert!(!lower.contains("//cdn") && !lower.contains("@import"));
            assert!(!page.contains("innerHTML") && !page.contains("outerHTML"));
            assert!(!page.contains("insertAdjacentHTML") && !page.contains("eval("));
        }
        assert!(!PAGES.dashboard.contains("EventSource"));
    }
}

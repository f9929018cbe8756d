//! The dashboard's static files, built into the binary: the NHS.UK frontend's stylesheet
//! (vendored by `tools/vendor_nhsuk.py`, with no web fonts or other sites in it), its icons,
//! and the dashboard's own few rules.

/// The file at `path` under `/dashboard/assets/`, with its media type.
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    const CSS: &str = "text/css; charset=utf-8";
    const SVG: &str = "image/svg+xml";
    Some(match path {
        "nhsuk-frontend.min.css" => (
            include_bytes!("../../assets/nhsuk/nhsuk-frontend.min.css").as_slice(),
            CSS,
        ),
        "favicon.svg" => (include_bytes!("../../assets/favicon.svg").as_slice(), SVG),
        "dashboard.css" => (include_bytes!("../../assets/dashboard.css").as_slice(), CSS),
        "images/nhsuk-icon-arrow-down.svg" => (
            include_bytes!("../../assets/nhsuk/images/nhsuk-icon-arrow-down.svg").as_slice(),
            SVG,
        ),
        "images/nhsuk-icon-arrow-up-down.svg" => (
            include_bytes!("../../assets/nhsuk/images/nhsuk-icon-arrow-up-down.svg").as_slice(),
            SVG,
        ),
        "images/nhsuk-icon-arrow-up.svg" => (
            include_bytes!("../../assets/nhsuk/images/nhsuk-icon-arrow-up.svg").as_slice(),
            SVG,
        ),
        "images/nhsuk-icon-cross.svg" => (
            include_bytes!("../../assets/nhsuk/images/nhsuk-icon-cross.svg").as_slice(),
            SVG,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stylesheet_loads_nothing_from_elsewhere() {
        let (css, _) = super::asset("nhsuk-frontend.min.css").unwrap();
        let css = std::str::from_utf8(css).unwrap();
        assert!(!css.contains("@font-face"));
        assert!(!css.contains("https://"), "no URL of another site");
        for url in css.split("url(").skip(1) {
            let target = url.split(')').next().unwrap();
            let file = target
                .strip_prefix("/dashboard/assets/")
                .unwrap_or_else(|| panic!("{target} is not one of the dashboard's own files"));
            assert!(super::asset(file).is_some(), "{file} is not served");
        }
    }
}

//! The languages interkom speaks: German by default, English on request;
//! and the one parser of `Cookie` header values.

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// `ui_locales` wins (first supported tag), then the highest-weighted
    /// supported language of `Accept-Language`; German otherwise.
    pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> Lang {
        let tag = |t: &str| match t
            .trim()
            .split(['-', '_'])
            .next()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("de") => Some(Lang::De),
            Some("en") => Some(Lang::En),
            _ => None,
        };
        if let Some(l) = ui_locales.and_then(|u| u.split(' ').find_map(tag)) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let Some(lang) = it.next().and_then(tag) else {
                continue;
            };
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::De)
    }
}

/// The value of cookie `name` in these `Cookie` header values.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<String> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_and_cookies() {
        assert_eq!(Lang::negotiate(Some("fr en"), Some("de")), Lang::En);
        assert_eq!(
            Lang::negotiate(None, Some("fr, en;q=0.8, de;q=0.9")),
            Lang::De
        );
        assert_eq!(Lang::negotiate(None, Some("en-GB")), Lang::En);
        assert_eq!(Lang::negotiate(None, None), Lang::De);
        assert_eq!(cookie(["a=1; b=2", "c=3"], "b").as_deref(), Some("2"));
        assert_eq!(cookie(["a=1"], "c"), None);
    }
}

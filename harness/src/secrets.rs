//! Secrets never shown: what the harness learns of a run's secrets, and
//! the one function that takes them out of any text it shows (a SUT's
//! output, a hook's, a failure).
//!
//! A secret is the value of a SUT environment variable whose name says
//! it is one (`PASS`, `TOKEN`, `SECRET`, `KEY`) or that the profile lists
//! in `[sut] secret_env`, the Management API's password, and the password
//! in any broker URL a SUT is given.

use crate::profile::{Profile, SutSpec};

/// Names that mark an environment variable as a secret.
const SECRET_NAMES: [&str; 4] = ["PASS", "TOKEN", "SECRET", "KEY"];

/// What a shown text is cleared of.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The secrets of a profile, and the passwords of the broker URLs in
    /// a SUT's environment `env`.
    pub(crate) fn of(profile: &Profile, env: &[(&str, String)]) -> Self {
        let mut s = Secrets::default();
        if let SutSpec::Command(c) = &profile.sut {
            for (name, value) in &c.env {
                let upper = name.to_uppercase();
                if SECRET_NAMES.iter().any(|n| upper.contains(n))
                    || profile.secret_env.contains(name)
                {
                    s.add(value);
                }
            }
        }
        if let Some(m) = &profile.mgmt {
            s.add(&m.password);
        }
        for (_, value) in env {
            if let Some(p) = password(value) {
                s.add(&p);
            }
        }
        s
    }

    fn add(&mut self, secret: &str) {
        if !secret.is_empty() && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_owned());
        }
    }

    /// `text` with every secret, and the password of any URL in it,
    /// replaced by `***`.
    pub(crate) fn hide(&self, text: &str) -> String {
        static LOGIN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let login = LOGIN.get_or_init(|| {
            regex::Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")
                .expect("a valid expression")
        });
        let mut out = login.replace_all(text, "${1}***@").into_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// The password of a URL (`scheme://user:password@host...`), decoded as
/// the URL carries it.
fn password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (login, _) = rest.rsplit_once('@')?;
    let (_, password) = login.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn secrets_by_name_by_mark_and_in_urls_are_hidden() {
        let p = Profile::parse(
            r#"
            [sut]
            command = ["d"]
            env = { API_TOKEN = "tok-1", DB_PASSWORD = "pw-2", SPECIAL = "sp-3", PLAIN = "plain" }
            secret_env = ["SPECIAL"]
            "#,
            Path::new("p.toml"),
        )
        .unwrap();
        let env = [(
            crate::env::AMQP_URL,
            "amqp://dmconf:run-4@h:1/%2f".to_owned(),
        )];
        let s = Secrets::of(&p, &env);
        assert_eq!(
            s.hide("tok-1 pw-2 sp-3 plain amqp://dmconf:run-4@h:1/%2f run-4"),
            "*** *** *** plain amqp://dmconf:***@h:1/%2f ***"
        );
        assert_eq!(
            Secrets::default().hide("see mqtt://svc:pw@host:1883 now"),
            "see mqtt://svc:***@host:1883 now"
        );
    }
}

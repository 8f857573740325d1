//! `report.html`: one self-contained file that works offline, for someone
//! who did not run the tests. A summary (counts by verdict, the score by
//! level and basis), a table per suite, and for every case its
//! requirements, its verdict, the failure with expected and actual, and
//! the transcript as a message sequence chart (harness and SUT as lanes,
//! time down the page, each message opening to its headers, properties
//! and body). Filters by verdict, level and protocol (also from the
//! address: `report.html#verdict=failed&level=MUST`). Rendered here, from
//! the run's events alone; the page's script only hides rows.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use super::score::{Result, Score, Status};
use super::{Shown, fate, shown};
use crate::event::{CasePlan, Outcome, RunEvent, Sink, Verdict};
use crate::message::{Direction, Entry};

/// Collects the run's cases and draws each as it ends.
#[derive(Default)]
pub(crate) struct HtmlReporter {
    title: String,
    plan: Vec<CasePlan>,
    running: HashMap<String, Vec<Entry>>,
    /// Each ended case: its result and its drawn section.
    ended: HashMap<String, (Result, String)>,
}

/// `s` with `&`, `<`, `>` and `"` escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl Sink for HtmlReporter {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { plan, suts, .. } => {
                self.plan = plan.clone();
                let names: Vec<&str> = suts.iter().map(|s| s.profile.as_str()).collect();
                self.title = format!("dmconf: {}", names.join(" + "));
            }
            RunEvent::MessageSeen { case, entry } => {
                self.running
                    .entry(case.clone())
                    .or_default()
                    .push(entry.clone());
            }
            RunEvent::CaseFinished { verdict } => {
                let entries = self.running.remove(&verdict.case).unwrap_or_default();
                self.ended.insert(
                    verdict.case.clone(),
                    (Result::of(&verdict.outcome), drawn(verdict, &entries)),
                );
            }
            _ => {}
        }
    }
}

/// A case's verdict and transcript, as HTML.
fn drawn(v: &Verdict, entries: &[Entry]) -> String {
    let mut out = String::new();
    match &v.outcome {
        Outcome::Passed => {}
        Outcome::Failed(f) => {
            if let Some(s) = &f.step {
                let _ = writeln!(
                    out,
                    "<p class=\"at\">failed at step {} ({}) at {}</p>",
                    s.index,
                    esc(s.name.as_deref().unwrap_or(&s.kind)),
                    esc(&s.location.to_string())
                );
            }
            let _ = writeln!(
                out,
                "<dl class=\"miss\"><dt>expected</dt><dd>{}</dd><dt>actual</dt><dd>{}</dd></dl>",
                esc(&f.expected),
                esc(&f.actual)
            );
            if !f.observed.is_empty() {
                out.push_str("<ul class=\"observed\">");
                for o in &f.observed {
                    let why: Vec<String> =
                        o.mismatches.iter().map(|m| esc(&m.to_string())).collect();
                    let _ = write!(out, "<li>message #{}: {}</li>", o.entry, why.join("; "));
                }
                out.push_str("</ul>\n");
            }
            for n in &f.notes {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
            }
        }
        Outcome::Error { error } => {
            let _ = writeln!(
                out,
                "<p class=\"at\">not judged (the harness's or the broker's trouble, not the SUT's): {}</p>",
                esc(error)
            );
        }
    }
    let _ = writeln!(
        out,
        "<table class=\"chart\"><tr><th>#</th><th>time</th><th>harness</th><th></th><th>SUT</th></tr>"
    );
    let n = entries.len();
    for (i, e) in entries.iter().enumerate() {
        match shown(i, n) {
            Shown::Entry => {}
            Shown::LeftOut(k) => {
                let _ = writeln!(
                    out,
                    "<tr><td colspan=\"5\">{k} messages not drawn; the evidence has them all</td></tr>"
                );
                continue;
            }
            Shown::Hidden => continue,
        }
        let fate: String = fate(v, e).iter().map(|f| format!(" {f}")).collect();
        let headline: Vec<String> = e
            .message
            .headers
            .iter()
            .take(3)
            .map(|(k, v)| format!("{k}={}", crate::message::scalar_text(v).unwrap_or_default()))
            .collect();
        let message = format!(
            "<details><summary>{}{}</summary><pre>{}</pre></details>",
            esc(&headline.join(" ")),
            esc(&fate),
            esc(&e.message.render(""))
        );
        let (left, arrow, right) = match e.direction {
            Direction::ToSut => (message, "&#x2500;&#x25b6;", String::new()),
            Direction::FromSut => (String::new(), "&#x25c0;&#x2500;", message),
            Direction::Refused => (message, "&#x2717; refused", String::new()),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>+{:.3}s</td><td>{left}</td><td class=\"arrow\">{arrow}</td><td>{right}</td></tr>",
            e.index,
            e.at.as_secs_f64()
        );
    }
    out.push_str("</table>\n");
    if !v.sut_output.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>SUT output</summary><pre>{}</pre></details>",
            esc(&v.sut_output)
        );
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}\
.passed{color:#176b2c}.failed{color:#b00020}.error{color:#8a5a00}.ignored{color:#777}\
.known{color:#6a3d9a}pre{margin:0;white-space:pre-wrap;max-width:60em}\
.chart td.arrow{text-align:center;white-space:nowrap}.case{margin:.4em 0}\
.filters label{margin-right:1em}.miss dt{font-weight:bold}\
#incomplete{background:#fff3cd;border:1px solid #c90;padding:.4em}";

const SCRIPT: &str = "function apply(){var v=document.getElementById('verdict').value,\
l=document.getElementById('level').value,p=document.getElementById('protocol').value,shown=0;\
document.querySelectorAll('[data-case]').forEach(function(e){var ok=(!v||e.dataset.verdict==v)\
&&(!l||e.dataset.level==l)&&(!p||e.dataset.protocol==p);e.style.display=ok?'':'none';\
if(ok&&e.tagName=='DETAILS')shown++;});document.querySelectorAll('section').forEach(function(s){\
s.style.display=s.querySelector('[data-case]:not([style*=none])')?'':'none'});\
document.getElementById('shown').textContent=shown;}\
document.querySelectorAll('.filters select').forEach(function(s){s.onchange=apply;\
var m=location.hash.match(new RegExp(s.id+'=([^&]*)'));if(m)s.value=decodeURIComponent(m[1]);});apply();";

impl HtmlReporter {
    /// The page, with `score`; `None` before the run's plan is known.
    pub(crate) fn page(&self, score: &Score, status: Status) -> Option<String> {
        let title = &self.title;
        if self.plan.is_empty() {
            return None;
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
            esc(title)
        );
        let _ = writeln!(out, "<h1>{}</h1>", esc(title));
        let why = match status {
            Status::Finished => None,
            Status::Interrupted => Some("was interrupted"),
            Status::Running => Some("had not finished when this page was written"),
        };
        if let Some(why) = why {
            let unjudged = self
                .plan
                .iter()
                .filter(|p| self.verdict_of(p) == "not run")
                .count();
            let _ = writeln!(
                out,
                "<p id=\"incomplete\">Incomplete: the run {why}; {unjudged} of {} cases have no verdict.</p>",
                self.plan.len()
            );
        }
        // Counts by verdict.
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.plan {
            *counts.entry(self.verdict_of(p)).or_default() += 1;
        }
        out.push_str("<p id=\"counts\">");
        for (word, n) in &counts {
            let _ = write!(out, "<span class=\"{word}\">{n} {word}</span> ");
        }
        out.push_str("</p>\n");
        let _ = writeln!(out, "<p id=\"score\">{}</p>", esc(&score.line()));
        out.push_str("<table id=\"levels\"><tr><th></th><th>passed</th><th>failed</th><th>error</th><th>not applicable</th></tr>");
        for (name, t) in score.levels().chain(score.bases()) {
            let _ = write!(
                out,
                "<tr><th>{name}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.passed, t.failed, t.errors, t.not_applicable
            );
        }
        out.push_str("</table>\n");
        out.push_str(
            "<p class=\"filters\"><label>verdict <select id=\"verdict\"><option value=\"\">all</option>\
<option>passed</option><option>failed</option><option>error</option><option>ignored</option><option>known</option></select></label>\
<label>level <select id=\"level\"><option value=\"\">all</option><option>MUST</option><option>SHOULD</option></select></label>\
<label>protocol <select id=\"protocol\"><option value=\"\">all</option><option>dmf</option><option>ability</option></select></label>\
<span id=\"shown\"></span> cases shown</p>\n",
        );
        // The coverage: every requirement, its cases and whether it holds.
        out.push_str("<details id=\"coverage\"><summary>requirements and their cases</summary><table><tr><th>requirement</th><th>level</th><th>basis</th><th>holds</th><th>cases</th></tr>");
        for c in &score.requirements {
            let holds = match c.holds {
                Some(true) => "<span class=\"passed\">yes</span>",
                Some(false) => "<span class=\"failed\">no</span>",
                None => "<span class=\"ignored\">not applicable</span>",
            };
            let cases: Vec<String> = c
                .cases
                .iter()
                .map(|(case, _)| {
                    let id = case.rsplit("::").next().unwrap_or_default();
                    format!("<a href=\"#{}\">{}</a>", esc(case), esc(id))
                })
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{holds}</td><td>{}</td></tr>",
                esc(&c.id),
                c.level.as_str(),
                if c.inferred {
                    format!("{}, inferred", c.basis.as_str())
                } else {
                    c.basis.as_str().to_owned()
                },
                cases.join(", ")
            );
        }
        out.push_str("</table></details>\n");
        // A table and the cases of each suite.
        let mut suites: BTreeMap<&str, Vec<&CasePlan>> = BTreeMap::new();
        for p in &self.plan {
            let suite = p.case.rsplit_once("::").map_or("", |(s, _)| s);
            suites.entry(suite).or_default().push(p);
        }
        for (suite, cases) in suites {
            let _ = writeln!(out, "<section><h2>{}</h2>", esc(suite));
            for p in cases {
                self.case(&mut out, p);
            }
            out.push_str("</section>\n");
        }
        let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
        Some(out)
    }

    fn verdict_of(&self, p: &CasePlan) -> &'static str {
        match (&p.ignored, self.ended.get(&p.case).map(|(r, _)| r)) {
            (Some(_), _) | (None, Some(Result::Ignored)) => "ignored",
            (None, Some(Result::Failed)) if p.known_deviation.is_some() => "known",
            (None, Some(Result::Passed)) => "passed",
            (None, Some(Result::Failed)) => "failed",
            (None, Some(Result::Error)) => "error",
            (None, Some(Result::NotRun) | None) => "not run",
        }
    }

    fn case(&self, out: &mut String, p: &CasePlan) {
        let verdict = self.verdict_of(p);
        let level = p
            .requirements
            .iter()
            .map(|r| r.level)
            .max()
            .map_or("", |l| l.as_str());
        let protocol = p.case.split("::").next().unwrap_or_default();
        let id = p.case.rsplit("::").next().unwrap_or_default();
        let _ = writeln!(
            out,
            "<details class=\"case\" id=\"{}\" data-case data-verdict=\"{verdict}\" data-level=\"{level}\" data-protocol=\"{}\"><summary><span class=\"{verdict}\">{verdict}</span> {}</summary>",
            esc(&p.case),
            esc(protocol),
            esc(id)
        );
        out.push_str("<ul>");
        for r in &p.requirements {
            let _ = write!(
                out,
                "<li><b>{}</b> [{}] ({}, {}): {}</li>",
                esc(&r.id),
                r.grade(),
                esc(&r.source),
                esc(&r.section),
                esc(&r.text)
            );
        }
        out.push_str("</ul>\n");
        if let Some(why) = &p.ignored {
            let _ = writeln!(out, "<p class=\"ignored\">does not apply: {}</p>", esc(why));
        }
        if let Some(known) = &p.known_deviation {
            let _ = writeln!(
                out,
                "<p class=\"known\">known deviation: {}</p>",
                esc(known)
            );
        }
        if let Some((_, section)) = self.ended.get(&p.case) {
            out.push_str(section);
        }
        out.push_str("</details>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_message_is_shown_not_run() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
        );
    }
}

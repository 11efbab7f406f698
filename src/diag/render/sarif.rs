//! SARIF 2.1.0 for GitHub code scanning, built with serde-sarif's types.

use std::io::{self, Write};

use serde_sarif::sarif::{
    ArtifactLocation, Location, LogicalLocation, Message, MultiformatMessageString,
    PhysicalLocation, Region, ReportingConfiguration, ReportingDescriptor, Result as SarifResult,
    ResultLevel, Run, Sarif, Tool, ToolComponent,
};

use crate::diag::position::{placed, Prefer};
use crate::diag::report::{Report, RuleInfo};
use crate::diag::Severity;

/// Where a rule's page is published: the `rules/` folder of the repository.
pub fn help_uri(rule: &str) -> String {
    format!(
        "{}/blob/main/rules/{}.md",
        env!("CARGO_PKG_REPOSITORY"),
        rule
    )
}

fn level(s: Severity) -> ResultLevel {
    match s {
        Severity::Error => ResultLevel::Error,
        Severity::Warning => ResultLevel::Warning,
        Severity::Note => ResultLevel::Note,
    }
}

fn descriptor(rule: &RuleInfo) -> ReportingDescriptor {
    ReportingDescriptor::builder()
        .id(rule.code)
        .name(rule.name)
        .short_description(
            MultiformatMessageString::builder()
                .text(rule.summary)
                .build(),
        )
        .full_description(
            MultiformatMessageString::builder()
                .text(rule.summary)
                .markdown(rule.explanation)
                .build(),
        )
        .help(
            MultiformatMessageString::builder()
                .text(format!("run `nnlint explain {}`", rule.name))
                .markdown(rule.explanation)
                .build(),
        )
        .help_uri(help_uri(rule.name))
        .default_configuration(
            ReportingConfiguration::builder()
                .level(serde_json::to_value(level(rule.severity)).unwrap_or_default())
                .build(),
        )
        .build()
}

pub fn render(report: &Report, prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    let (reports, rules) = (&report.files, &report.rules);
    let mut results = Vec::new();
    for p in placed(reports, prefer) {
        let (d, path, at) = (p.diagnostic, &p.path, p.at);
        let region = Region::builder()
            .start_line(at.line as i64)
            .start_column(at.column as i64)
            .end_line(at.end_line as i64)
            .end_column(at.end_column as i64)
            .build();
        let physical = PhysicalLocation::builder()
            .artifact_location(ArtifactLocation::builder().uri(uri(path)).build())
            .region(region)
            .build();
        let mut location = Location::builder().physical_location(physical).build();
        if let Some(node) = &d.node {
            location.logical_locations = Some(vec![LogicalLocation::builder()
                .name(node.clone())
                .kind("function")
                .build()]);
        }
        let mut text = d.message.clone();
        if let Some(model) = p.model {
            text.push_str(&format!(" [in {model}]"));
        }
        for h in &d.help {
            text.push_str(&format!("\nhelp: {h}"));
        }
        let mut result = SarifResult::builder()
            .rule_id(d.code)
            .level(level(d.severity))
            .message(Message::builder().text(text).build())
            .locations(vec![location])
            .build();
        result.rule_index = rules
            .iter()
            .position(|m| m.name == d.rule)
            .map(|i| i as i64);
        results.push(result);
    }
    let driver = ToolComponent::builder()
        .name("nnlint")
        .version(env!("CARGO_PKG_VERSION"))
        .semantic_version(env!("CARGO_PKG_VERSION"))
        .information_uri(env!("CARGO_PKG_HOMEPAGE"))
        .rules(rules.iter().map(descriptor).collect::<Vec<_>>())
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .column_kind(serde_json::Value::from("unicodeCodePoints"))
        .build();
    let log = Sarif::builder()
        .schema("https://json.schemastore.org/sarif-2.1.0.json")
        .version(serde_json::Value::from("2.1.0"))
        .runs(vec![run])
        .build();
    serde_json::to_writer_pretty(&mut *out, &log)?;
    writeln!(out)
}

/// A path as a URI: a relative reference for a relative path, a `file://`
/// URI for an absolute one (a reference beginning with `/` is not a relative
/// reference in SARIF: SARIF1004). Forward slashes, reserved characters escaped.
fn uri(path: &str) -> String {
    let slashed = path.replace('\\', "/");
    let drive = slashed.as_bytes().get(1) == Some(&b':')
        && slashed.as_bytes()[0].is_ascii_alphabetic()
        && slashed.as_bytes().get(2) == Some(&b'/');
    let mut out = String::with_capacity(path.len() + 8);
    let rest = if slashed.starts_with('/') {
        out.push_str("file://");
        slashed.as_str()
    } else if drive {
        // `C:/x` -> `file:///C:/x`, the drive letter and colon kept as they are.
        out.push_str("file:///");
        out.push_str(&slashed[..2]);
        &slashed[2..]
    } else {
        slashed.as_str()
    };
    for b in rest.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn absolute_paths_are_file_uris_and_relative_ones_references() {
        assert_eq!(uri("fixtures/a b.onnx"), "fixtures/a%20b.onnx");
        assert_eq!(uri("/work/ci/m.onnx"), "file:///work/ci/m.onnx");
        assert_eq!(uri("C:\\ci\\m#1.py"), "file:///C:/ci/m%231.py");
    }
}

//! Topic templates: text with `{source}`, `{kind}`, `{event}`, `{name}`, `{schema}` placeholders.
//!
//! `vigil/{source}/{kind}` gives `vigil/cam1/analytics`; `{event}` is the analytics event kind
//! (`line_crossed`, `zone_overcrowded`, ...; the message kind for other messages), `{name}` the line or
//! zone name (an object's label; empty for frames), `{schema}` the schema name (`vigil.analytics.v1`).
//! Parsing refuses unknown placeholders, unbalanced braces, MQTT wildcards (`+`, `#`) and empty
//! templates, with a message naming the problem.

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopicVars<'a> {
    pub source: &'a str,
    pub kind: &'a str,
    pub event: &'a str,
    pub name: &'a str,
    pub schema: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Source,
    Kind,
    Event,
    Name,
    Schema,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
    text: String,
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: &str = "{source}, {kind}, {event}, {name}, {schema}";

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.is_empty() {
            return Err("the topic template is empty".into());
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest.find('}').ok_or_else(|| {
                        format!("topic template '{template}': '{{' without a closing '}}'")
                    })?;
                    let var = match &rest[1..end] {
                        "source" => Var::Source,
                        "kind" => Var::Kind,
                        "event" => Var::Event,
                        "name" => Var::Name,
                        "schema" => Var::Schema,
                        other => {
                            return Err(format!(
                                "topic template '{template}': unknown placeholder '{{{other}}}' (known: {PLACEHOLDERS})"
                            ));
                        }
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Var(var));
                    rest = &rest[end + 1..];
                    continue;
                }
                '}' => {
                    return Err(format!(
                        "topic template '{template}': '}}' without an opening '{{'"
                    ));
                }
                '+' | '#' | '\0' => {
                    return Err(format!(
                        "topic template '{template}': '{}' is not allowed in a topic to publish to",
                        c.escape_default()
                    ));
                }
                _ => text.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            parts,
            text: template.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The topic for these values. Wildcard characters in values (`+`, `#`) become `_`, so a rendered
    /// topic is always one a client may publish to.
    pub fn render(&self, v: &TopicVars) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(var) => {
                    let value = match var {
                        Var::Source => v.source,
                        Var::Kind => v.kind,
                        Var::Event => v.event,
                        Var::Name => v.name,
                        Var::Schema => v.schema,
                    };
                    out.extend(value.chars().map(|c| match c {
                        '+' | '#' | '\0' => '_',
                        c => c,
                    }));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = TopicTemplate::parse("vigil/{source}/{kind}/{event}/{name}").unwrap();
        let v = TopicVars {
            source: "cam1",
            kind: "analytics",
            event: "line_crossed",
            name: "gate+1",
            schema: "vigil.analytics.v1",
        };
        assert_eq!(t.render(&v), "vigil/cam1/analytics/line_crossed/gate_1");
        let t = TopicTemplate::parse("{schema}").unwrap();
        assert_eq!(t.render(&v), "vigil.analytics.v1");
        assert_eq!(TopicTemplate::parse("plain").unwrap().render(&v), "plain");
    }

    #[test]
    fn refuses_bad_templates_with_the_reason() {
        let e = TopicTemplate::parse("vigil/{camera}").unwrap_err();
        assert!(e.contains("unknown placeholder '{camera}'"), "{e}");
        let e = TopicTemplate::parse("vigil/{source").unwrap_err();
        assert!(e.contains("without a closing"), "{e}");
        let e = TopicTemplate::parse("vigil/source}").unwrap_err();
        assert!(e.contains("without an opening"), "{e}");
        let e = TopicTemplate::parse("vigil/#").unwrap_err();
        assert!(e.contains("'#' is not allowed"), "{e}");
        assert!(TopicTemplate::parse("a/+/b").is_err());
        assert!(TopicTemplate::parse("").is_err());
    }
}

//! Located diagnostics for fly.toml: `path:line:column: message`, the source
//! line and a caret under the offending text, rustc style.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Span;

/// One problem at one place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// The text of the line, without its newline.
    pub source_line: String,
    /// Width of the caret run in characters (at least 1).
    pub width: usize,
    /// A suggestion such as "did you mean `instances`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// Locate `span` (byte offsets) in `source`.
    pub fn at(path: &Path, source: &str, span: Span, message: impl Into<String>) -> Self {
        let start = span.start.min(source.len());
        let end = span.end.clamp(start, source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let width = source[start..end.min(line_end)].chars().count().max(1);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
            source_line,
            width,
            help: None,
        }
    }

    /// A problem with no better place than the start of the file.
    pub fn at_start(path: &Path, source: &str, message: impl Into<String>) -> Self {
        Self::at(path, source, 0..0, message)
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{num} | {}", self.source_line)?;
        write!(
            f,
            "{pad} | {}{}",
            " ".repeat(self.column.saturating_sub(1)),
            "^".repeat(self.width)
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// Errors of the config layer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more located problems; nothing was changed.
    #[error("{}", render_all(.diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&d.to_string());
    }
    if diags.len() > 1 {
        out.push_str(&format!("\n\n{} errors in fly.toml", diags.len()));
    }
    out
}

impl ConfigError {
    pub fn single(d: Diagnostic) -> Self {
        ConfigError::Invalid {
            diagnostics: vec![d],
        }
    }
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid { diagnostics } => diagnostics,
            ConfigError::Io { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_span_on_its_line() {
        let src = "app = \"x\"\n[postgres]\n  instancs = 3\n";
        let start = src.find("instancs").unwrap();
        let d = Diagnostic::at(Path::new("fly.toml"), src, start..start + 8, "unknown key")
            .with_help("did you mean `instances`?");
        assert_eq!((d.line, d.column, d.width), (3, 3, 8));
        let text = d.to_string();
        assert!(text.starts_with("fly.toml:3:3: unknown key\n"), "{text}");
        assert!(
            text.contains("3 |   instancs = 3\n  |   ^^^^^^^^"),
            "{text}"
        );
        assert!(
            text.ends_with("= help: did you mean `instances`?"),
            "{text}"
        );
    }
}

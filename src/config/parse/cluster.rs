//! The cluster's identity: `app`, `primary_region` (or its stand-ins) and
//! the image with the PostgreSQL major version read from its tag.

use super::*;

impl Reader<'_> {
    pub(super) fn read_app(&mut self, root: &Tbl, dialect: Dialect) -> String {
        let Some(f) = self.field(root, "app") else {
            if dialect == Dialect::Services {
                let name = self.app_from_directory();
                self.note(
                    self.start(),
                    format!("`app` is not set; using `{name}`, from the directory of the file"),
                );
                return name;
            }
            self.error_help(
                self.start(),
                "missing key `app`",
                "add app = \"<name>\", the Fly app of the cluster",
            );
            return String::new();
        };
        let Some(app) = self.string(&f) else {
            return String::new();
        };
        if app.is_empty() {
            self.invalid_help(
                &f,
                "`app` must not be empty",
                "set it to the Fly app of the cluster",
            );
        } else if let Err(why) = names::check_fly_app_name(&app) {
            self.invalid(&f, format!("invalid Fly app name {app:?}: {why}"));
        }
        app
    }

    /// The services dialect names no app: the directory holding the file
    /// stands in for it.
    pub(super) fn app_from_directory(&self) -> String {
        std::path::absolute(self.path)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .and_then(|n| names::sanitise_app_name(&n))
            .unwrap_or_else(|| "postgres".to_string())
    }

    pub(super) fn read_primary_region(&mut self, root: &Tbl, dialect: Dialect) -> String {
        if let Some(f) = self.field(root, "primary_region") {
            let Some(code) = self.string(&f) else {
                return String::new();
            };
            self.check_region(&f, &code);
            return code;
        }
        // Fly Postgres apps made before `primary_region` existed name their
        // region in `env.PRIMARY_REGION`.
        let env = root
            .t
            .get("env")
            .and_then(Item::as_table_like)
            .and_then(|env| env.get("PRIMARY_REGION"))
            .and_then(|item| item.as_str().map(|s| (s.to_string(), item.span())));
        if let Some((code, span)) = env {
            let span = span.unwrap_or_else(|| self.start());
            self.spans.insert("primary_region", span.clone());
            let f_path = "env.PRIMARY_REGION".to_string();
            if regions::is_region(&code) {
                self.note(
                    span,
                    format!("`primary_region` is not set; using env.PRIMARY_REGION = {code:?}"),
                );
            } else {
                self.poisoned.insert(f_path);
                self.unknown_region(&code, span);
            }
            return code;
        }
        if dialect == Dialect::Services {
            self.note(
                self.start(),
                format!("`primary_region` is not set; using {SERVICES_DEFAULT_REGION:?}"),
            );
            return SERVICES_DEFAULT_REGION.to_string();
        }
        self.error_help(
            self.start(),
            "missing key `primary_region`",
            "add primary_region = \"<region>\", where the leader and its failover candidates run, e.g. \"iad\"",
        );
        String::new()
    }

    pub(super) fn check_region(&mut self, f: &Field, code: &str) {
        if !regions::is_region(code) {
            self.poisoned.insert(f.path.clone());
            self.unknown_region(code, f.span.clone());
        }
    }

    pub(super) fn unknown_region(&mut self, code: &str, span: Span) {
        let help = match regions::closest_region(code) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "`fly platform regions` lists the region codes".to_string(),
        };
        self.error_help(span, format!("unknown Fly region {code:?}"), help);
    }

    /// `[build]`: the image, if given.
    pub(super) fn read_build(&mut self, root: &Tbl) -> Option<(String, Span)> {
        let f = self.field(root, "build")?;
        let t = self.table(&f, "[build]")?;
        self.check_keys(&t, &keys::BUILD);
        let f = self.field(&t, "image")?;
        let image = self.string(&f)?;
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.invalid(&f, format!("invalid image reference {image:?}"));
            return None;
        }
        Some((image, f.span))
    }

    /// The image (default `flyio/postgres-flex:15`) and the PostgreSQL major
    /// version read from its tag.
    pub(super) fn image_and_major(&mut self, image: Option<(String, Span)>) -> (String, u32) {
        let Some((image, span)) = image else {
            return (DEFAULT_IMAGE.to_string(), DEFAULT_PG_MAJOR);
        };
        match major_from_image(&image) {
            Ok(major) => (image, major.unwrap_or(DEFAULT_PG_MAJOR)),
            Err(tag) => {
                self.poisoned.insert("build.image".to_string());
                self.error_help(
                    span,
                    format!("cannot read a PostgreSQL major version from the image tag {tag:?}"),
                    format!(
                        "use a tag that starts with the major version, e.g. flyio/postgres-flex:{DEFAULT_PG_MAJOR} or postgres:{DEFAULT_PG_MAJOR}-alpine"
                    ),
                );
                (image, DEFAULT_PG_MAJOR)
            }
        }
    }
}

/// The PostgreSQL major version in an image tag: `flyio/postgres-flex:15.3`
/// → 15, `postgres:16-alpine` → 16, `timescale/timescaledb-ha:pg15-ts2.11`
/// → 15. `Ok(None)` when there is no tag; `Err(tag)` when the tag names no
/// plausible version.
fn major_from_image(image: &str) -> Result<Option<u32>, String> {
    let image = image.split('@').next().unwrap_or(image);
    let name = image.rsplit('/').next().unwrap_or(image);
    let Some((_, tag)) = name.split_once(':') else {
        return Ok(None);
    };
    let digits = tag.strip_prefix("pg").unwrap_or(tag);
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<u32>()
        .ok()
        .filter(|m| (9..=99).contains(m))
        .map(Some)
        .ok_or_else(|| tag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_comes_from_the_image_tag() {
        assert_eq!(major_from_image("flyio/postgres-flex:15.3"), Ok(Some(15)));
        assert_eq!(major_from_image("postgres:16-alpine"), Ok(Some(16)));
        assert_eq!(major_from_image("flyio/postgres:14"), Ok(Some(14)));
        assert_eq!(major_from_image("postgres:18"), Ok(Some(18)));
        assert_eq!(
            major_from_image("timescale/timescaledb-ha:pg15-ts2.11"),
            Ok(Some(15))
        );
        assert_eq!(
            major_from_image("registry.example:5000/pg:13"),
            Ok(Some(13))
        );
        assert_eq!(major_from_image("flyio/postgres-flex"), Ok(None));
        assert_eq!(major_from_image("registry.example:5000/pg"), Ok(None));
        assert_eq!(major_from_image("pg:latest"), Err("latest".to_string()));
        assert_eq!(
            major_from_image("imgineapi/imagineapi-postgres:0.1"),
            Err("0.1".to_string())
        );
    }
}

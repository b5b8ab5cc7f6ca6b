//! The object keys captures stored with `store=true` get: `<prefix>/<account>/<name>`, where
//! `name` is the caller's `store_path` or `<random uuid>.<extension>`. Each account writes only
//! under its own folder, so one customer can never overwrite (or name) another's objects; a
//! generated name is a random UUID (v4, 122 random bits), so an object in a public bucket cannot
//! be guessed from another's URL.

use crate::config::is_object_name;

use super::StorageError;

/// The file extension of a stored capture of `format` (`png`, `jpeg`, `webp`, `pdf`).
pub fn extension(format: &str) -> &'static str {
    match format {
        "jpeg" => "jpg",
        "webp" => "webp",
        "pdf" => "pdf",
        _ => "png",
    }
}

/// The key of a stored capture: `<prefix>/<account>/<store_path>` when the caller named it,
/// else `<prefix>/<account>/<uuid>.<extension>` (no leading prefix when `prefix` is empty).
pub fn capture_key(
    prefix: &str,
    account: &str,
    store_path: Option<&str>,
    extension: &str,
) -> Result<String, StorageError> {
    let name = match store_path {
        Some(path) => path.to_string(),
        None => format!("{}.{extension}", uuid::Uuid::new_v4().simple()),
    };
    let key = [prefix, account, &name]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    // The account id and every part must be plain object names: nothing can climb out of the
    // account's folder.
    if account.is_empty() || account.contains('/') || !is_object_name(account) {
        return Err(StorageError::InvalidKey(key));
    }
    if !is_object_name(&name) || (!prefix.is_empty() && !is_object_name(prefix)) {
        return Err(StorageError::InvalidKey(key));
    }
    if key.len() > 1024 {
        return Err(StorageError::InvalidKey(key.chars().take(200).collect()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_random_under_the_account() {
        let a = capture_key("captures", "acc_0190", None, "png").expect("key");
        let b = capture_key("captures", "acc_0190", None, "png").expect("key");
        assert_ne!(a, b);
        let name = a
            .strip_prefix("captures/acc_0190/")
            .and_then(|n| n.strip_suffix(".png"))
            .expect("prefix/account/<uuid>.png");
        assert_eq!(name.len(), 32, "{a}");
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        let bare = capture_key("", "acc_1", None, "webp").expect("key");
        assert!(
            bare.starts_with("acc_1/") && bare.ends_with(".webp"),
            "{bare}"
        );
    }

    #[test]
    fn a_store_path_is_used_as_given_inside_the_account() {
        assert_eq!(
            capture_key("shots/v1", "acc_1", Some("2026/12/home.png"), "png").expect("key"),
            "shots/v1/acc_1/2026/12/home.png"
        );
    }

    #[test]
    fn nothing_climbs_out_of_the_account() {
        for path in ["../acc_2/x.png", "a/../../x", "/abs.png", "a//b", ".", ""] {
            assert!(
                capture_key("captures", "acc_1", Some(path), "png").is_err(),
                "{path:?}"
            );
        }
        for account in ["", "..", "a/b", "acc 1"] {
            assert!(
                capture_key("captures", account, None, "png").is_err(),
                "{account:?}"
            );
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("png"), "png");
        assert_eq!(extension("jpeg"), "jpg");
        assert_eq!(extension("webp"), "webp");
        assert_eq!(extension("pdf"), "pdf");
    }
}

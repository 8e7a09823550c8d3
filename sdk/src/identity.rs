//! Anonymous ids that stay the same for a visitor, and the `identify` event
//! that links one to a user (SPEC §1).
//!
//! Tally counts an event for its *person*: the `user_id`, or else the
//! `anonymous_id`. An event that carries both *links* the anonymous id to
//! the user, and from then on every analysis counts all of that anonymous
//! id's events, earlier and later ones, for the user (the earliest link of
//! an anonymous id wins). So a visitor's anonymous landing-page views and
//! their signup are one person in a funnel, provided that:
//!
//! 1. the visitor keeps **one anonymous id** until they sign up or log in
//!    ([`stored_anonymous_id`] for a CLI or desktop app; a cookie for a web
//!    server, see [`new_anonymous_id`]), and
//! 2. the app sends **one event with both ids** when it learns who the
//!    visitor is: [`Client::identify`](crate::Client::identify), or the
//!    signup event itself with [`Track::anonymous_id`](crate::Track::anonymous_id).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use tally_event::validate::MAX_PERSON_KEY_BYTES;

use tally_event::time::now_ms;

use crate::track::new_event_id;

/// The name of the event [`Client::identify`](crate::Client::identify)
/// sends, the same as the browser SDK's `tally.identify(userId)`: look for
/// it in `tally events`, or leave it out of funnels (it links ids; it is
/// not an action of the user's).
pub const IDENTIFY_EVENT: &str = "identify";

/// A new anonymous id: a UUIDv7 in its hyphenated lower-case form (like the
/// browser SDK's), unique without coordination and sortable by creation
/// time.
///
/// ```
/// let id = tally_sdk::new_anonymous_id();
/// assert_eq!(id.len(), 36);
/// assert_eq!(tally_sdk::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
/// assert_ne!(id, tally_sdk::new_anonymous_id());
/// ```
///
/// ## Web servers: the anonymous id lives in a cookie
///
/// A server sees many visitors, so it keeps no id of its own: it reads the
/// visitor's id from a first-party cookie, and sets one with a new id on
/// the visitor's first request. (The browser SDK, `/sdk.js`, keeps its own
/// id in `localStorage` instead; a page using both can pass
/// `tally.anonymousId()` to the server, e.g. in a hidden form field, so
/// that the server's [`identify`](crate::Client::identify) links the id
/// the browser's events carry.)
///
/// ```
/// /// The visitor's anonymous id from a `Cookie` header, and the
/// /// `Set-Cookie` value to answer with when the visitor had none.
/// fn anonymous_id(cookie_header: Option<&str>) -> (String, Option<String>) {
///     let known = cookie_header.into_iter().flat_map(|h| h.split(';')).find_map(|c| {
///         c.trim().strip_prefix("tally_anon=").filter(|v| !v.is_empty())
///     });
///     match known {
///         Some(id) => (id.to_owned(), None),
///         None => {
///             let id = tally_sdk::new_anonymous_id();
///             // A year; HttpOnly, since only the server reads it.
///             let set = format!(
///                 "tally_anon={id}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly; Secure"
///             );
///             (id, Some(set))
///         }
///     }
/// }
///
/// let (first, set_cookie) = anonymous_id(None);
/// assert!(set_cookie.is_some());
/// // The next request carries the cookie: same visitor, same id.
/// let header = format!("theme=dark; tally_anon={first}");
/// assert_eq!(anonymous_id(Some(&header)), (first, None));
/// ```
pub fn new_anonymous_id() -> String {
    new_event_id(now_ms()).to_string()
}

/// The anonymous id kept in the file at `path`, created (with a
/// [new id](new_anonymous_id), and the missing parent directories) on
/// first use: a stable id for the person using a CLI or desktop app, until
/// they log in. `path` is the app's choice, typically in its data
/// directory (`~/.local/share/APP/anonymous_id` on Linux,
/// `~/Library/Application Support/APP/anonymous_id` on macOS,
/// `%APPDATA%\APP\anonymous_id` on Windows).
///
/// Call it once at startup and keep the id: it reads (and the first time
/// writes and fsyncs) a small file on the calling thread. Processes that
/// start at the same time get the same id: a new file is published with a
/// hard link, which never replaces a file another process published
/// first. A file that does not hold a usable id (empty, torn, more than
/// 255 bytes, control characters) is replaced by a new one. To start a
/// new anonymous identity (say at logout), delete the file.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let data_dir = dir.path();
/// use tally_sdk::{Client, Person, stored_anonymous_id};
///
/// // First run: a new id is created and stored ...
/// let anon = stored_anonymous_id(data_dir.join("myapp/anonymous_id"))?;
/// // ... every later run reads the same one back.
/// assert_eq!(stored_anonymous_id(data_dir.join("myapp/anonymous_id"))?, anon);
///
/// let client = Client::disabled(); // in a real app: Client::builder(...).build()
/// client.track(Person::anonymous(&anon), "app_opened").send().unwrap();
/// // When the person logs in, link the id (and their events so far) to them.
/// client.identify("user-42", &anon).send().unwrap();
/// # Ok(())
/// # }
/// ```
pub fn stored_anonymous_id(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    // Two rounds suffice: a lost race to create the file reads the
    // winner's id in the second.
    for _ in 0..3 {
        match fs::read_to_string(path) {
            Ok(text) => {
                if let Some(id) = usable(&text) {
                    return Ok(id.to_owned());
                }
                // Not an id (a crash mid-write on a file system that
                // reorders, or an edit): replace it.
                let id = new_anonymous_id();
                let tmp = write_temp(path, &id)?;
                fs::rename(&tmp, path).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })?;
                sync_dir(path);
                // If another process replaced it at the same moment, the
                // last rename won: use what is there now.
                return Ok(fs::read_to_string(path)
                    .ok()
                    .and_then(|t| usable(&t).map(str::to_owned))
                    .unwrap_or(id));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                let id = new_anonymous_id();
                match publish(path, &id) {
                    Ok(()) => return Ok(id),
                    // Another process published first: read its id.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{}: the anonymous id file keeps changing",
        path.display()
    )))
}

/// The id in a file's text, if it is one the collector takes.
fn usable(text: &str) -> Option<&str> {
    let id = text.trim();
    (!id.is_empty() && id.len() <= MAX_PERSON_KEY_BYTES && !id.chars().any(char::is_control))
        .then_some(id)
}

/// Writes `id` to a new file beside `path`, synced; returns its path.
fn write_temp(path: &Path, id: &str) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::rng().random();
    let tmp = path.with_file_name(format!(".{name}.{}.{suffix:016x}.tmp", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes a complete file holding `id` appear at `path`, unless a file is
/// already there (then `AlreadyExists`). A hard link of a finished
/// temporary file is atomic and never replaces; where hard links are not
/// supported, the file is created in place with `create_new` instead.
fn publish(path: &Path, id: &str) -> io::Result<()> {
    let tmp = write_temp(path, id)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {
            let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
            f.write_all(format!("{id}\n").as_bytes())?;
            f.sync_all()?;
        }
    }
    sync_dir(path);
    Ok(())
}

/// Makes a new directory entry durable (best effort: not every platform
/// can sync a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

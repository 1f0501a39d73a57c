//! Synchronous object operations on one bucket's client: get, head, put (multipart when
//! large), list, delete. Clients are made once per bucket from the environment, as the
//! `object_store` crate's `from_env` builders read it (`AWS_*` for S3, `GOOGLE_*` for GCS),
//! falling back to the instance's metadata server (a TPU VM's service account) where no
//! credentials are set. Errors keep the `io::ErrorKind` (`NotFound` for a missing object) so
//! callers tell absence from failure, and say what to check when access is refused.
use super::runtime::block_on;
use super::url::{ObjectUrl, Scheme};
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Objects up to this size go up in one PUT; larger ones in parts of this size (S3 takes at
/// most 5 GiB in one PUT, and parts let a large checkpoint upload a few at a time).
const PART_BYTES: usize = 32 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// The client of `url`'s bucket (made on first use, then shared).
pub(crate) fn client(url: &ObjectUrl) -> io::Result<Arc<dyn ObjectStore>> {
    type Clients = HashMap<(Scheme, String), Arc<dyn ObjectStore>>;
    static CLIENTS: Mutex<Option<Clients>> = Mutex::new(None);
    let mut guard = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    let clients = guard.get_or_insert_with(HashMap::new);
    let id = (url.scheme, url.bucket.clone());
    if let Some(c) = clients.get(&id) {
        return Ok(c.clone());
    }
    let built: object_store::Result<Arc<dyn ObjectStore>> = match url.scheme {
        Scheme::S3 => object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        Scheme::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
    };
    let client = built.map_err(|e| {
        let vars = match url.scheme {
            Scheme::S3 => "AWS_*",
            Scheme::Gcs => "GOOGLE_*",
        };
        io::Error::other(format!(
            "cannot configure the client of bucket '{}' from the {vars} environment \
             variables: {e}",
            url.bucket
        ))
    })?;
    clients.insert(id, client.clone());
    Ok(client)
}

/// The key of `url` as the client takes it.
pub(crate) fn key(url: &ObjectUrl) -> Key {
    // ObjectUrl::parse refused empty, '.' and '..' segments, so the key is already valid.
    Key::from(url.key.as_str())
}

/// An `object_store` error as an `io::Error` of the same kind, with a hint where access was
/// refused.
pub(crate) fn io_error(e: object_store::Error) -> io::Error {
    use object_store::Error as E;
    let (kind, hint) = match &e {
        E::NotFound { .. } => (io::ErrorKind::NotFound, ""),
        E::AlreadyExists { .. } => (io::ErrorKind::AlreadyExists, ""),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            io::ErrorKind::PermissionDenied,
            " (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://, \
             GOOGLE_APPLICATION_CREDENTIALS or the VM's service account for gs://; see \
             docs/tpu.md)",
        ),
        E::InvalidPath { .. } => (io::ErrorKind::InvalidInput, ""),
        E::Precondition { .. } => (
            io::ErrorKind::Other,
            " (the object was replaced while tpu-run read it; rerun once it is stable)",
        ),
        _ => (io::ErrorKind::Other, ""),
    };
    io::Error::new(kind, format!("{e}{hint}"))
}

/// The whole object.
pub fn get(url: &ObjectUrl) -> io::Result<Vec<u8>> {
    let c = client(url)?;
    let k = key(url);
    let bytes = block_on(async move { c.get(&k).await?.bytes().await })?.map_err(io_error)?;
    Ok(bytes.to_vec())
}

/// The object's size in bytes.
pub fn size(url: &ObjectUrl) -> io::Result<u64> {
    let c = client(url)?;
    let k = key(url);
    Ok(block_on(async move { c.head(&k).await })?
        .map_err(io_error)?
        .size)
}

/// Writes `data` as the object (replacing it): one PUT, or a multipart upload when large.
/// Either way the object appears whole or not at all.
pub fn put(url: &ObjectUrl, data: Vec<u8>) -> io::Result<()> {
    let c = client(url)?;
    let k = key(url);
    let data = Bytes::from(data);
    if data.len() <= PART_BYTES {
        return block_on(async move { c.put(&k, PutPayload::from(data)).await })?
            .map(|_| ())
            .map_err(io_error);
    }
    block_on(async move {
        let mut w = WriteMultipart::new_with_chunk_size(c.put_multipart(&k).await?, PART_BYTES);
        for part in data.chunks(PART_BYTES) {
            w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            w.put(data.slice_ref(part));
        }
        w.finish().await.map(|_| ())
    })?
    .map_err(io_error)
}

/// Uploads the local file `local` as the object, reading it in parts (a shard may not fit
/// in memory twice).
pub fn put_file(url: &ObjectUrl, local: &Path) -> io::Result<()> {
    let mut f = std::fs::File::open(local)?;
    let len = f.metadata()?.len();
    if len <= PART_BYTES as u64 {
        let mut data = Vec::with_capacity(len as usize);
        f.read_to_end(&mut data)?;
        return put(url, data);
    }
    let c = client(url)?;
    let k = key(url);
    let upload = block_on(async move { c.put_multipart(&k).await })?.map_err(io_error)?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut buf = vec![0u8; PART_BYTES];
    loop {
        let n = read_up_to(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        // Inside the runtime: `write` spawns the part's upload as a task.
        let part = &buf[..n];
        block_on(async {
            w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            w.write(part);
            Ok::<(), object_store::Error>(())
        })?
        .map_err(io_error)?;
    }
    block_on(w.finish())?.map(|_| ()).map_err(io_error)
}

/// Fills `buf` as far as the file goes.
fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Deletes the object; an absent one is not an error.
pub fn delete(url: &ObjectUrl) -> io::Result<()> {
    let c = client(url)?;
    let k = key(url);
    match block_on(async move { c.delete(&k).await })? {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// One level under a prefix: the names of its "subdirectories" (common prefixes) and of its
/// objects, each without the prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub dirs: Vec<String>,
    pub objects: Vec<String>,
}

/// The entries directly under `url` taken as a directory.
pub fn list_dir(url: &ObjectUrl) -> io::Result<Listing> {
    let c = client(url)?;
    let prefix = (!url.key.is_empty()).then(|| key(url));
    let r =
        block_on(async move { c.list_with_delimiter(prefix.as_ref()).await })?.map_err(io_error)?;
    let name = |k: &Key| k.filename().unwrap_or_default().to_string();
    Ok(Listing {
        dirs: r.common_prefixes.iter().map(name).collect(),
        objects: r.objects.iter().map(|m| name(&m.location)).collect(),
    })
}

/// Every object under `url` taken as a directory, at any depth: (key, size), sorted by key.
pub fn list_all(url: &ObjectUrl) -> io::Result<Vec<(String, u64)>> {
    let c = client(url)?;
    let prefix = (!url.key.is_empty()).then(|| key(url));
    let metas: Vec<object_store::ObjectMeta> =
        block_on(async move { c.list(prefix.as_ref()).try_collect().await })?.map_err(io_error)?;
    let mut out: Vec<(String, u64)> = metas
        .into_iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    out.sort();
    Ok(out)
}

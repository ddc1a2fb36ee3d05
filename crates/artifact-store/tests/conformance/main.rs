//! The artifact-store conformance suite: every case against a local directory and against an
//! S3-compatible server (when `AWS_ENDPOINT_URL` and `LOOPLINE_TEST_S3_BUCKET` are set, as
//! `scripts/test.sh` does with a local moto server).

use bytes::Bytes;
use futures::StreamExt;
use loopline_artifact_store::{ArtifactError, ArtifactPath, ArtifactStore, ByteStream, ObjectArtifactStore};

struct StoreUnderTest {
    store: ObjectArtifactStore,
    _temporary: Option<tempfile::TempDir>,
}

fn local_store() -> Option<StoreUnderTest> {
    let temporary = tempfile::tempdir().unwrap();
    let store = ObjectArtifactStore::open(&temporary.path().display().to_string()).unwrap();
    Some(StoreUnderTest {
        store,
        _temporary: Some(temporary),
    })
}

fn s3_store() -> Option<StoreUnderTest> {
    let (Ok(_), Ok(bucket)) = (
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("LOOPLINE_TEST_S3_BUCKET"),
    ) else {
        eprintln!(
            "AWS_ENDPOINT_URL / LOOPLINE_TEST_S3_BUCKET are not set: the S3 cases did not run (scripts/test.sh sets them)"
        );
        return None;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let destination = format!("s3://{bucket}/conformance-{}", uuid::Uuid::new_v4().simple());
    Some(StoreUnderTest {
        store: ObjectArtifactStore::open(&destination).unwrap(),
        _temporary: None,
    })
}

fn path(text: &str) -> ArtifactPath {
    ArtifactPath::parse(text).unwrap()
}

fn body_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(chunks.into_iter().map(|chunk| Ok(Bytes::from(chunk)))).boxed()
}

async fn read_all(store: &ObjectArtifactStore, location: &str) -> Result<Vec<u8>, ArtifactError> {
    let download = store.get(&path(location)).await?;
    let mut body = download.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes.len() as u64, download.size);
    Ok(bytes)
}

async fn small_files_round_trip(store: &ObjectArtifactStore) {
    let written = store
        .put(
            &path("run/artifacts/a.txt"),
            body_of(vec![b"hello ".to_vec(), b"world".to_vec()]),
        )
        .await
        .unwrap();
    assert_eq!(written, 11);
    assert_eq!(read_all(store, "run/artifacts/a.txt").await.unwrap(), b"hello world");
    store
        .put(&path("run/artifacts/a.txt"), body_of(vec![b"replaced".to_vec()]))
        .await
        .unwrap();
    assert_eq!(read_all(store, "run/artifacts/a.txt").await.unwrap(), b"replaced");
    store.put(&path("run/artifacts/empty"), body_of(vec![])).await.unwrap();
    assert_eq!(read_all(store, "run/artifacts/empty").await.unwrap(), b"");
}

async fn large_files_stream_in_parts(store: &ObjectArtifactStore) {
    let chunk: Vec<u8> = (0..65_536u32).map(|index| (index % 251) as u8).collect();
    let chunks = vec![chunk.clone(); 320]; // 20 MiB: more than one multipart part.
    let written = store.put(&path("big/model.bin"), body_of(chunks)).await.unwrap();
    assert_eq!(written, 20 * 1024 * 1024);
    let bytes = read_all(store, "big/model.bin").await.unwrap();
    assert_eq!(bytes.len(), 20 * 1024 * 1024);
    assert!(bytes.chunks(65_536).all(|piece| piece == chunk.as_slice()));
}

async fn listings_show_one_level(store: &ObjectArtifactStore) {
    for file in ["d/x.txt", "d/sub/y.txt", "d/sub/deeper/z.txt"] {
        store.put(&path(file), body_of(vec![b"12345".to_vec()])).await.unwrap();
    }
    let entries = store.list(&path("d")).await.unwrap();
    let summary: Vec<(String, bool, Option<u64>)> = entries
        .into_iter()
        .map(|entry| (entry.name, entry.is_dir, entry.size))
        .collect();
    assert_eq!(
        summary,
        vec![("sub".to_string(), true, None), ("x.txt".to_string(), false, Some(5))]
    );
    assert!(
        store.list(&path("d/x.txt")).await.unwrap().is_empty(),
        "a file lists as empty"
    );
    assert!(
        store.list(&path("nothing/here")).await.unwrap().is_empty(),
        "a missing path lists as empty"
    );
}

async fn missing_files_and_directories_are_not_found(store: &ObjectArtifactStore) {
    store
        .put(&path("dir/file"), body_of(vec![b"x".to_vec()]))
        .await
        .unwrap();
    assert!(matches!(
        read_all(store, "dir/missing").await,
        Err(ArtifactError::NotFound(_))
    ));
    assert!(matches!(read_all(store, "dir").await, Err(ArtifactError::NotFound(_))));
}

async fn deletion_of_files_and_trees(store: &ObjectArtifactStore) {
    for file in ["t/a", "t/b/c", "t/b/d", "keep/e"] {
        store.put(&path(file), body_of(vec![b"x".to_vec()])).await.unwrap();
    }
    store.delete(&path("t/a")).await.unwrap();
    assert!(matches!(read_all(store, "t/a").await, Err(ArtifactError::NotFound(_))));
    store.delete(&path("t/b")).await.unwrap();
    assert!(matches!(
        read_all(store, "t/b/c").await,
        Err(ArtifactError::NotFound(_))
    ));
    assert!(matches!(
        store.delete(&path("t/none")).await,
        Err(ArtifactError::NotFound(_))
    ));
    assert_eq!(read_all(store, "keep/e").await.unwrap(), b"x");
}

async fn failed_uploads_leave_nothing(store: &ObjectArtifactStore) {
    let chunk = vec![7u8; 4 * 1024 * 1024];
    let failing: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from(chunk.clone())),
        Ok(Bytes::from(chunk.clone())),
        Ok(Bytes::from(chunk)),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    let error = store.put(&path("partial/file.bin"), failing).await.unwrap_err();
    assert!(matches!(error, ArtifactError::Body { .. }), "{error}");
    assert!(matches!(
        read_all(store, "partial/file.bin").await,
        Err(ArtifactError::NotFound(_))
    ));
}

macro_rules! conformance_suite {
    ($backend:ident, $constructor:ident, [$($case:ident),*]) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(under_test) = super::$constructor() {
                        super::$case(&under_test.store).await;
                    }
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($case:ident),*) => {
        conformance_suite!(local, local_store, [$($case),*]);
        conformance_suite!(s3, s3_store, [$($case),*]);
    };
}

every_backend!(
    small_files_round_trip,
    large_files_stream_in_parts,
    listings_show_one_level,
    missing_files_and_directories_are_not_found,
    deletion_of_files_and_trees,
    failed_uploads_leave_nothing
);

#[test]
fn staging_files_of_interrupted_uploads_are_removed_and_nothing_else() {
    let directory = tempfile::tempdir().unwrap();
    let nested = directory.path().join("1/run/artifacts");
    std::fs::create_dir_all(&nested).unwrap();
    for name in ["model.pkl#3", "model.pkl", "notes#draft", "weights.bin#12"] {
        std::fs::write(nested.join(name), b"x").unwrap();
    }
    let removed = loopline_artifact_store::remove_abandoned_staging_files(directory.path(), std::time::Duration::ZERO);
    assert_eq!(removed, 2);
    let mut left: Vec<String> = std::fs::read_dir(&nested)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["model.pkl", "notes#draft"]);
    std::fs::write(nested.join("fresh#1"), b"x").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(
        loopline_artifact_store::remove_abandoned_staging_files(directory.path(), hour),
        0
    );
}

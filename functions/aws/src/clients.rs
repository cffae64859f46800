//! The AWS clients, built once per process: one SDK configuration (region, credentials, endpoint)
//! shared by the SDK clients and by the `object_store` S3 stores, so both sign with the same
//! credentials and reach the same endpoint (`AWS_ENDPOINT_URL` points both at an emulator).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{ClientOptions, CredentialProvider, ObjectStore};

use crate::error::{AwsError, Result};

/// Loads region, credentials and endpoint the standard way (environment, then the Lambda's role).
pub async fn sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

/// The SDK configuration loader with an HTTPS client on rustls + ring, the crypto library
/// `object_store` already links; tests add an emulator's endpoint and credentials to it.
pub fn sdk_config_loader() -> ConfigLoader {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client)
}

/// An S3 client; `force_path_style` for emulators that do not serve virtual-hosted buckets.
pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An `object_store` view of one bucket. `request_timeout` bounds a whole request including its
/// body, so the raw bucket, whose objects are streamed for minutes, gets a long one.
pub fn bucket_store(
    sdk: &SdkConfig,
    bucket: &str,
    request_timeout: Duration,
) -> Result<Arc<dyn ObjectStore>> {
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| AwsError::config("AWS_ACCESS_KEY_ID", "no AWS credentials were found"))?;
    let region = sdk
        .region()
        .ok_or_else(|| AwsError::config("AWS_REGION", "is not set"))?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region.as_ref())
        .with_credentials(Arc::new(SdkCredentials::new(credentials)))
        .with_client_options(ClientOptions::new().with_timeout(request_timeout));
    if let Some(endpoint) = sdk.endpoint_url() {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(builder.build()?))
}

/// The SDK's credentials for `object_store`, cached until shortly before they expire (the
/// Lambda's role credentials come from the environment; other providers may be remote calls).
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

/// Credentials this close to expiry are fetched again.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

impl SdkCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            cached: Mutex::new(None),
        }
    }

    fn fresh(&self) -> Option<Arc<AwsCredential>> {
        let cached = self.cached.lock().ok()?;
        let (credential, expiry) = cached.as_ref()?;
        match expiry {
            Some(expiry) if SystemTime::now() + REFRESH_BEFORE_EXPIRY >= *expiry => None,
            _ => Some(credential.clone()),
        }
    }
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some(credential) = self.fresh() {
            return Ok(credential);
        }
        let credentials = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((credential.clone(), credentials.expiry()));
        }
        Ok(credential)
    }
}

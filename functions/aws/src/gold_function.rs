//! The gold function: on its EventBridge schedule, or on the `silver.committed` event the ingest
//! function sends, it recomputes gold for every tenant whose silver changed since the last refresh
//! and publishes one `gold.refreshed` message per tenant to the notifications topic. A run with
//! nothing new writes nothing and sends nothing; a run that finds another refresh holding the lock
//! leaves the work to it (and to the next schedule).

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use metriccare_core::gold::{self, HaiValueSet};
use metriccare_core::hudi::Retention;
use metriccare_core::ports::Topic;
use metriccare_core::profile::TenantProfile;
use object_store::ObjectStore;
use serde_json::{Value, json};

use crate::clients::{bucket_store, sdk_config};
use crate::config::GoldConfig;
use crate::error::Result;
use crate::sns::SnsNotifier;

const LAKE_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct GoldFunction {
    lake: Arc<dyn ObjectStore>,
    notifier: SnsNotifier,
    /// How a tenant without a profile (`config/tenants/<tenant>.json`) is read.
    profile_defaults: TenantProfile,
    retention: Retention,
}

impl GoldFunction {
    pub async fn from_config(config: GoldConfig) -> Result<Self> {
        let sdk = sdk_config().await;
        Self::with_sdk(&sdk, config)
    }

    pub fn with_sdk(sdk: &SdkConfig, config: GoldConfig) -> Result<Self> {
        Ok(Self {
            lake: bucket_store(sdk, &config.common.lake_bucket, LAKE_REQUEST_TIMEOUT)?,
            notifier: SnsNotifier::new(aws_sdk_sns::Client::new(sdk))
                .with_topic(Topic::Notifications, config.notifications_topic_arn),
            profile_defaults: TenantProfile::default_with(HaiValueSet::builtin()),
            retention: config.retention,
        })
    }

    /// Any event triggers the same refresh; its source is logged for the record.
    pub async fn handle(&self, event: Value) -> Result<Value> {
        let trigger = event
            .get("detail-type")
            .and_then(Value::as_str)
            .unwrap_or("direct invocation");
        let report = gold::refresh(
            &self.lake,
            &self.notifier,
            &self.profile_defaults,
            &self.retention,
        )
        .await?;
        let refreshed: Vec<&str> = report
            .refreshed
            .iter()
            .map(|t| t.tenant_id.as_str())
            .collect();
        if report.busy {
            tracing::info!(trigger, "another gold refresh is running: nothing done");
        } else if report.changed_tenants.is_empty() {
            tracing::info!(
                trigger,
                "no silver changes since the last refresh: nothing done"
            );
        } else {
            tracing::info!(
                trigger,
                changed = report.changed_tenants.len(),
                refreshed = refreshed.len(),
                gold_commits = report.gold_instants.len(),
                "gold refreshed"
            );
        }
        Ok(json!({
            "busy": report.busy,
            "changed_tenants": report.changed_tenants,
            "refreshed_tenants": refreshed,
            "gold_instants": report.gold_instants,
            "silver_sequences": report.silver_sequences,
        }))
    }
}

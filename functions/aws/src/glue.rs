//! Glue: the catalog Athena reads, and the job that takes objects too big for a Lambda.
//!
//! Athena cannot `MSCK REPAIR` a Hudi table, so a new `tenant_id` partition is registered here with
//! `BatchCreatePartition` by the function that first writes the tenant. Registration is idempotent
//! (an existing partition is success) and remembered per process, so a warm Lambda pays for it once
//! per tenant.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{PartitionInput, StorageDescriptor};
use metriccare_core::ports::ScaleOut;
use metriccare_core::tenant::TenantId;
use metriccare_core::{CoreError, Result as CoreResult};

use crate::error::{AwsError, Result};

/// One Glue database and the Hudi tables in it.
pub struct CatalogTables {
    pub database: String,
    pub tables: Vec<String>,
}

pub struct GlueCatalog {
    client: Client,
    databases: Vec<CatalogTables>,
    /// Tenants whose partitions exist in every table.
    registered: Mutex<HashSet<String>>,
    /// Each table's storage descriptor, the template of its partitions' descriptors.
    descriptors: Mutex<HashMap<(String, String), StorageDescriptor>>,
}

impl GlueCatalog {
    pub fn new(client: Client, databases: Vec<CatalogTables>) -> Self {
        Self {
            client,
            databases,
            registered: Mutex::new(HashSet::new()),
            descriptors: Mutex::new(HashMap::new()),
        }
    }

    /// Makes sure `tenant_id=<tenant>` is a partition of every table.
    pub async fn register_tenant(&self, tenant: &TenantId) -> Result<()> {
        if self.is_registered(tenant) {
            return Ok(());
        }
        for catalog in &self.databases {
            for table in &catalog.tables {
                self.register(&catalog.database, table, tenant).await?;
            }
        }
        if let Ok(mut registered) = self.registered.lock() {
            registered.insert(tenant.to_string());
        }
        tracing::info!(tenant_id = %tenant, "tenant partitions registered in the Glue catalog");
        Ok(())
    }

    fn is_registered(&self, tenant: &TenantId) -> bool {
        self.registered
            .lock()
            .is_ok_and(|registered| registered.contains(tenant.as_str()))
    }

    async fn descriptor(&self, database: &str, table: &str) -> Result<StorageDescriptor> {
        let key = (database.to_owned(), table.to_owned());
        if let Some(found) = self
            .descriptors
            .lock()
            .ok()
            .and_then(|d| d.get(&key).cloned())
        {
            return Ok(found);
        }
        let output = self
            .client
            .get_table()
            .database_name(database)
            .name(table)
            .send()
            .await
            .map_err(|e| AwsError::sdk("Glue", "GetTable", e))?;
        let descriptor = output
            .table
            .and_then(|t| t.storage_descriptor)
            .filter(|d| d.location.is_some())
            .ok_or_else(|| AwsError::Sdk {
                service: "Glue",
                operation: "GetTable",
                message: format!("{database}.{table} has no storage location"),
            })?;
        if let Ok(mut descriptors) = self.descriptors.lock() {
            descriptors.insert(key, descriptor.clone());
        }
        Ok(descriptor)
    }

    async fn register(&self, database: &str, table: &str, tenant: &TenantId) -> Result<()> {
        let mut descriptor = self.descriptor(database, table).await?;
        let location = descriptor.location.take().unwrap_or_default();
        descriptor.location = Some(format!(
            "{}/{}",
            location.trim_end_matches('/'),
            tenant.partition_path()
        ));
        let partition = PartitionInput::builder()
            .values(tenant.as_str())
            .storage_descriptor(descriptor)
            .build();
        let output = self
            .client
            .batch_create_partition()
            .database_name(database)
            .table_name(table)
            .partition_input_list(partition)
            .send()
            .await
            .map_err(|e| AwsError::sdk("Glue", "BatchCreatePartition", e))?;
        for error in output.errors() {
            let detail = error.error_detail();
            let code = detail.and_then(|d| d.error_code()).unwrap_or_default();
            if code != "AlreadyExistsException" {
                return Err(AwsError::Sdk {
                    service: "Glue",
                    operation: "BatchCreatePartition",
                    message: format!(
                        "{database}.{table} tenant_id={tenant}: {code} {}",
                        detail.and_then(|d| d.error_message()).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The scale-out path: `StartJobRun` of the Glue job with the tenant and the ledger id (the job reads
/// the object's bucket, key and ETag from the ledger item). The job records the object's final
/// outcome in the ledger itself; a failed run reaches the alerts topic through
/// the EventBridge rule on Glue job state changes.
pub struct GlueJob {
    client: Client,
    job_name: String,
}

impl GlueJob {
    pub fn new(client: Client, job_name: impl Into<String>) -> Self {
        Self {
            client,
            job_name: job_name.into(),
        }
    }
}

#[async_trait]
impl ScaleOut for GlueJob {
    async fn start(&self, tenant_id: &str, ledger_id: &str) -> CoreResult<String> {
        let output = self
            .client
            .start_job_run()
            .job_name(&self.job_name)
            .arguments("--tenant_id", tenant_id)
            .arguments("--ledger_id", ledger_id)
            .send()
            .await
            .map_err(|e| {
                CoreError::ScaleOut(AwsError::sdk("Glue", "StartJobRun", e).to_string())
            })?;
        output
            .job_run_id
            .ok_or_else(|| CoreError::ScaleOut("StartJobRun returned no job run id".into()))
    }
}

//! The service side of egress private endpoints, whoever carries them, so that the endpoint
//! routes' tests are written once and run on every provider:
//! - `local`: endpoint services registered through the API (`/api/v1/endpoint-services`),
//!   connections accepted or rejected there;
//! - `aws`: VPC endpoint services on a network load balancer in moto, their connections
//!   accepted or rejected through EC2 as the service's owner would.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Provider, TestServer};

/// An endpoint service offered on the provider's service side.
#[derive(Debug, Clone)]
pub struct Offered {
    /// What an endpoint names as `target_service_identifier`.
    pub name: String,
    /// The provider's id of it.
    pub id: String,
}

/// A connection as the service's owner sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The connecting endpoint's `endpoint_connection_id`.
    pub endpoint_connection_id: String,
    /// `PENDING_ACCEPTANCE`, `AVAILABLE` (accepted), `REJECTED`, `EXPIRED` or `DELETED`.
    pub status: String,
    /// The provider's id of the connection (what accept and reject name).
    pub id: String,
}

impl TestServer {
    pub fn provider(&self) -> Provider {
        if self.aws.is_some() {
            Provider::Aws
        } else {
            Provider::Local
        }
    }

    /// What an accepted endpoint reads when nothing else holds it: on `local` it waits for a
    /// gateway's forwarder (the test servers run none), on `aws` AWS makes it available.
    pub fn accepted_state(&self) -> &'static str {
        match self.provider() {
            Provider::Local => "PENDING",
            Provider::Aws => "AVAILABLE",
        }
    }

    /// How the provider's endpoint connection ids begin.
    pub fn connection_prefix(&self) -> &'static str {
        match self.provider() {
            Provider::Local => "pe-",
            Provider::Aws => "vpce-",
        }
    }

    /// Run a boto3 script against the test server's moto (off the async workers).
    pub fn boto3(&self, script: &str) -> Value {
        let aws = self.aws.as_ref().expect("an aws test server");
        let out = tokio::task::block_in_place(|| aws.moto.python(script));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Offer an endpoint service in us-east-1, named after `label`. With `auto_accept`, that
    /// account's connections are accepted at once (on `aws`: acceptance not required); with
    /// `quick_expiry` (on `local`), a connection waits for acceptance one second only.
    pub async fn offer(
        &self,
        label: &str,
        acceptance_required: bool,
        auto_accept: Option<&str>,
        quick_expiry: bool,
    ) -> Offered {
        match self.provider() {
            Provider::Local => {
                let mut body = json!({
                    "service_name": format!("com.amazonaws.vpce.us-east-1.vpce-svc-{label}"),
                    "region": "us-east-1", "backends": ["198.51.100.1:9092"],
                    "acceptance_required": acceptance_required,
                    "auto_accept_accounts": auto_accept.into_iter().collect::<Vec<_>>(),
                });
                if quick_expiry {
                    body["acceptance_timeout_seconds"] = json!(1);
                }
                let v = self
                    .ok(Method::POST, "/api/v1/endpoint-services", Some(body))
                    .await;
                Offered {
                    name: v["service_name"].as_str().unwrap().into(),
                    id: v["id"].as_str().unwrap().into(),
                }
            }
            Provider::Aws => {
                let required = acceptance_required && auto_accept.is_none();
                let v = self.boto3(&format!(
                    r#"
import boto3, json, os
url = os.environ["MOTO_URL"]
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
elb = boto3.client("elbv2", region_name="us-east-1", endpoint_url=url)
subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
nlb = elb.create_load_balancer(Name="svc-{label}", Subnets=[subnet], Type="network", Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]
svc = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[nlb], AcceptanceRequired={py})["ServiceConfiguration"]
print(json.dumps({{"name": svc["ServiceName"], "id": svc["ServiceId"]}}))
"#,
                    py = if required { "True" } else { "False" }
                ));
                Offered {
                    name: v["name"].as_str().unwrap().into(),
                    id: v["id"].as_str().unwrap().into(),
                }
            }
        }
    }

    /// The service's connections, as its owner sees them.
    pub async fn connections_of(&self, svc: &Offered) -> Vec<Seen> {
        match self.provider() {
            Provider::Local => {
                let v = self
                    .ok(
                        Method::GET,
                        &format!("/api/v1/endpoint-services/{}/connections", svc.id),
                        None,
                    )
                    .await;
                v["connections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| Seen {
                        endpoint_connection_id: c["id"].as_str().unwrap().into(),
                        status: c["status"].as_str().unwrap().into(),
                        id: c["id"].as_str().unwrap().into(),
                    })
                    .collect()
            }
            Provider::Aws => {
                let v = self.boto3(&format!(
                    r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
cs = ec2.describe_vpc_endpoint_connections(Filters=[{{"Name": "service-id", "Values": ["{id}"]}}])["VpcEndpointConnections"]
print(json.dumps([[c["VpcEndpointId"], c["VpcEndpointState"]] for c in cs]))
"#,
                    id = svc.id
                ));
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let state = c[1].as_str().unwrap();
                        let status = match state {
                            "pendingAcceptance" => "PENDING_ACCEPTANCE",
                            "pending" | "available" => "AVAILABLE",
                            "deleting" | "deleted" => "DELETED",
                            other => return (c[0].clone(), other.to_ascii_uppercase()),
                        };
                        (c[0].clone(), status.to_string())
                    })
                    .map(|(id, status)| Seen {
                        endpoint_connection_id: id.as_str().unwrap().into(),
                        status,
                        id: id.as_str().unwrap().into(),
                    })
                    .collect()
            }
        }
    }

    /// The service's owner accepts (`true`) or rejects a connection; the connection as the
    /// owner then sees it.
    pub async fn decide(&self, svc: &Offered, connection: &str, accept: bool) -> String {
        match self.provider() {
            Provider::Local => {
                let verb = if accept { "accept" } else { "reject" };
                let v = self
                    .ok(
                        Method::POST,
                        &format!(
                            "/api/v1/endpoint-services/{}/connections/{connection}/{verb}",
                            svc.id
                        ),
                        None,
                    )
                    .await;
                v["status"].as_str().unwrap().into()
            }
            Provider::Aws => {
                let call = if accept {
                    "accept_vpc_endpoint_connections"
                } else {
                    "reject_vpc_endpoint_connections"
                };
                let v = self.boto3(&format!(
                    r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
print(json.dumps(ec2.{call}(ServiceId="{id}", VpcEndpointIds=["{connection}"])["Unsuccessful"]))
"#,
                    id = svc.id
                ));
                assert_eq!(v, json!([]), "{call} {connection}");
                if accept { "AVAILABLE" } else { "REJECTED" }.into()
            }
        }
    }

    /// Whether deciding an already decided connection is refused by the service side.
    pub async fn decide_again_refused(&self, svc: &Offered, connection: &str) -> bool {
        match self.provider() {
            Provider::Local => {
                let (st, _) = self
                    .admin(
                        Method::POST,
                        &format!(
                            "/api/v1/endpoint-services/{}/connections/{connection}/accept",
                            svc.id
                        ),
                        None,
                    )
                    .await;
                st == 400
            }
            Provider::Aws => {
                let v = self.boto3(&format!(
                    r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
print(json.dumps(ec2.accept_vpc_endpoint_connections(ServiceId="{id}", VpcEndpointIds=["{connection}"])["Unsuccessful"]))
"#,
                    id = svc.id
                ));
                v.as_array().is_some_and(|a| a.len() == 1)
            }
        }
    }

    /// A connection waiting for acceptance runs out of time: on `local` the service's one
    /// second passes; on `aws` AWS's own clock is stood in for by moto's state control.
    pub async fn expire(&self, connection: &str) {
        if let Some(aws) = &self.aws {
            aws.moto.control(
                "vpc-endpoint-state",
                &json!({"VpcEndpointId": connection, "State": "expired"}),
            );
        }
    }

    /// A service whose endpoints stay `PENDING` (holding the cluster lock) until
    /// [`TestServer::release_pending`]: on `local` one that accepts at once (the test servers
    /// run no forwarder); on `aws`, CloudWatch Logs while AWS throttles every create.
    pub async fn hold_pending(&self) -> String {
        match &self.aws {
            None => self.offer("lock", false, None, false).await.name,
            Some(aws) => {
                aws.moto.control(
                    "throttle",
                    &json!({"Action": "CreateVpcEndpoint", "Count": 100000}),
                );
                "com.amazonaws.us-east-1.logs".into()
            }
        }
    }

    /// Let endpoints held by [`TestServer::hold_pending`] go on.
    pub fn release_pending(&self) {
        if let Some(aws) = &self.aws {
            aws.moto.control(
                "throttle",
                &json!({"Action": "CreateVpcEndpoint", "Count": 0}),
            );
        }
    }

    /// The service's owner withdraws it.
    pub async fn withdraw(&self, svc: &Offered) -> u16 {
        match self.provider() {
            Provider::Local => {
                self.admin(
                    Method::DELETE,
                    &format!("/api/v1/endpoint-services/{}", svc.id),
                    None,
                )
                .await
                .0
            }
            Provider::Aws => {
                let v = self.boto3(&format!(
                    r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
print(json.dumps(ec2.delete_vpc_endpoint_service_configurations(ServiceIds=["{id}"])["Unsuccessful"]))
"#,
                    id = svc.id
                ));
                if v == json!([]) { 200 } else { 400 }
            }
        }
    }
}

/// Generate, for each listed `async fn name(s: &TestServer)` of the calling file, a test per
/// store backend and provider: `sqlite_local::name`, `postgres_local::name`, `sqlite_aws::name`
/// and `postgres_aws::name`.
#[macro_export]
macro_rules! on_every_backend_and_provider {
    ($($name:ident),* $(,)?) => {
        $crate::on_every_backend_and_provider!(@mod sqlite_local, Sqlite, Local, $($name),*);
        $crate::on_every_backend_and_provider!(@mod postgres_local, Postgres, Local, $($name),*);
        $crate::on_every_backend_and_provider!(@mod sqlite_aws, Sqlite, Aws, $($name),*);
        $crate::on_every_backend_and_provider!(@mod postgres_aws, Postgres, Aws, $($name),*);
    };
    (@mod $m:ident, $backend:ident, $provider:ident, $($name:ident),*) => {
        mod $m {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = $crate::common::TestServer::start_with(
                        $crate::common::Backend::$backend,
                        $crate::common::Provider::$provider,
                    )
                    .await;
                    super::$name(&s).await;
                    s.stop().await;
                }
            )*
        }
    };
}

use super::*;

#[test]
fn target_service_type_parse() {
    for t in TargetServiceType::ALL {
        assert_eq!(t.as_str().parse(), Ok(t));
    }
    let err = "PRIVATE"
        .parse::<TargetServiceType>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"MSK_TLS\""), "{err}");
}

#[test]
fn valid_targets() {
    use Provider::*;
    let cases = [
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.vpce.us-east-1.vpce-svc-example",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-east-1.logs",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-east-1.log",
        ),
        (
            Aws,
            "us-west-2",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-west-2.s3",
        ),
        (
            Aws,
            "eu-west-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.eu-west-1.kinesis-streams",
        ),
        (
            Aws,
            "eu-west-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.eu-west-1.ecr.api",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_IAM",
            "arn:aws:kafka:us-east-1:123456789012:cluster/my-cluster/abcd1234-ab12-cd34-ef56-abcdef123456-1",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_SCRAM",
            "arn:aws:kafka:us-east-1:example:cluster/demo/example",
        ),
        (
            Aws,
            "ap-southeast-1",
            "MSK_TLS",
            "arn:aws:kafka:ap-southeast-1:000000000000:cluster/c/1",
        ),
        (
            Gcp,
            "us-central1",
            "PRIVATE_SERVICE",
            "projects/my-project/regions/us-central1/serviceAttachments/my-attachment",
        ),
        (
            Gcp,
            "europe-west1",
            "PRIVATE_SERVICE",
            "projects/example/regions/europe-west1/serviceAttachments/example",
        ),
        (
            Azure,
            "eastus",
            "PRIVATE_SERVICE",
            "/subscriptions/example/resourceGroups/my-rg/providers/Microsoft.Network/privateLinkServices/my-pls",
        ),
        (
            Azure,
            "westeurope",
            "PRIVATE_SERVICE",
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg.(x)/providers/microsoft.network/privatelinkservices/pls",
        ),
        (
            Azure,
            "eastus",
            "PRIVATE_SERVICE",
            "my-service.5fc31b0b-1e77-4bc8-98d9-c1d06d9fb0d2.eastus.azure.privatelinkservice",
        ),
        (
            Azure,
            "eastus2",
            "PRIVATE_SERVICE",
            "my.service.example.eastus2.azure.privatelinkservice",
        ),
    ];
    for (provider, region, t, id) in cases {
        let got = validate_endpoint_target(provider, region, t, id)
            .unwrap_or_else(|e| panic!("{provider} {t} {id}: {e}"));
        assert_eq!(got.as_str(), t);
    }
}

#[test]
fn invalid_targets() {
    use Provider::*;
    let cases = [
        (
            Aws,
            "us-east1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-east-1.s3",
            "region",
            "us-east1 is a GCP region; AWS regions look like us-east-1",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE",
            "com.amazonaws.us-east-1.s3",
            "target_service_type",
            "PRIVATE_SERVICE",
        ),
        (
            Gcp,
            "us-east1",
            "MSK_SASL_IAM",
            "x",
            "target_service_type",
            "only on AWS",
        ),
        (
            Azure,
            "eastus",
            "MSK_TLS",
            "x",
            "target_service_type",
            "only on AWS",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "",
            "target_service_identifier",
            "is empty",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.vpce.us-west-2.vpce-svc-0123",
            "region",
            "region is us-east-1 but the target service identifier names region \"us-west-2\"",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-west-2.s3",
            "region",
            "\"us-west-2\"",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.vpce.us-east-1.svc-0123",
            "target_service_identifier",
            "com.amazonaws.vpce.us-east-1.vpce-svc-",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-east-1",
            "target_service_identifier",
            "not a valid AWS PRIVATE_SERVICE identifier",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "vpce-svc-0123",
            "target_service_identifier",
            "not a valid",
        ),
        (
            Aws,
            "us-east-1",
            "PRIVATE_SERVICE",
            "com.amazonaws.us-east-1.S3",
            "target_service_identifier",
            "not a valid",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_IAM",
            "arn:aws:kafka:us-west-2:123:cluster/a/b",
            "region",
            "\"us-west-2\"",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_IAM",
            "arn:aws:kafka:us-east-1:123:topic/a/b",
            "target_service_identifier",
            "MSK cluster ARN",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_IAM",
            "arn:aws:kafka:us-east-1:123:cluster/a",
            "target_service_identifier",
            "MSK cluster ARN",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_SASL_IAM",
            "arn:aws:kafka:us-east-1::cluster/a/b",
            "target_service_identifier",
            "MSK cluster ARN",
        ),
        (
            Aws,
            "us-east-1",
            "MSK_TLS",
            "com.amazonaws.us-east-1.s3",
            "target_service_identifier",
            "MSK cluster ARN",
        ),
        (
            Gcp,
            "us-east1",
            "PRIVATE_SERVICE",
            "projects/p/regions/us-central1/serviceAttachments/a",
            "region",
            "\"us-central1\"",
        ),
        (
            Gcp,
            "us-east1",
            "PRIVATE_SERVICE",
            "projects/p/regions/us-east1/forwardingRules/a",
            "target_service_identifier",
            "service attachment",
        ),
        (
            Gcp,
            "us-east1",
            "PRIVATE_SERVICE",
            "projects//regions/us-east1/serviceAttachments/a",
            "target_service_identifier",
            "not a valid",
        ),
        (
            Azure,
            "eastus",
            "PRIVATE_SERVICE",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb",
            "target_service_identifier",
            "Private Link Service",
        ),
        (
            Azure,
            "eastus",
            "PRIVATE_SERVICE",
            "svc.guid.westus.azure.privatelinkservice",
            "region",
            "\"westus\"",
        ),
        (
            Azure,
            "eastus",
            "PRIVATE_SERVICE",
            "guid.eastus.azure.privatelinkservice",
            "target_service_identifier",
            "not a valid",
        ),
        (
            Azure,
            "East US",
            "PRIVATE_SERVICE",
            "x",
            "region",
            "not a known Azure region",
        ),
    ];
    for (provider, region, t, id, field, reason) in cases {
        let err = validate_endpoint_target(provider, region, t, id).expect_err(id);
        assert_eq!(err.field, field, "{provider} {t} {id}: {err}");
        assert!(
            err.message.contains(reason),
            "{provider} {t} {id}: {}",
            err.message
        );
    }
}

#[test]
fn domain_names() {
    let names: Vec<String> = [
        "*.US-East-2.aws.confluent.cloud.",
        "db.example.com",
        "*.us-east-2.aws.confluent.cloud",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        validate_domain_names(&names),
        Ok(vec![
            "*.us-east-2.aws.confluent.cloud".to_owned(),
            "db.example.com".to_owned()
        ])
    );
    assert_eq!(validate_domain_names(&[]), Ok(vec![]));

    let bad = [
        (
            vec!["ok.example.com", "*.com"],
            "domain_names[1]",
            "anyone can register a name under com",
        ),
        (vec!["a_b.example.com"], "domain_names[0]", "'_'"),
        (vec!["*"], "domain_names[0]", "bare"),
    ];
    for (names, field, reason) in bad {
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let err = validate_domain_names(&names).unwrap_err();
        assert_eq!(err.field, field);
        assert!(err.message.contains(reason), "{}", err.message);
    }
    let many = vec!["a.example.com".to_owned(); 101];
    assert_eq!(
        validate_domain_names(&many).unwrap_err().field,
        "domain_names"
    );
}

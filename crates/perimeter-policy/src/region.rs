//! Cloud providers and their region names.

use std::fmt;
use std::str::FromStr;

use crate::FieldError;
use crate::error::quote;

/// A cloud provider a cluster or private endpoint runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
}

/// A provider name other than `AWS`, `GCP` or `AZURE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cloud provider {input} is not known; use one of \"AWS\", \"GCP\", \"AZURE\"")]
pub struct ProviderError {
    input: String,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Gcp, Provider::Azure];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Gcp => "GCP",
            Provider::Azure => "AZURE",
        }
    }

    /// Human name used in messages ("Azure").
    fn display_name(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Gcp => "GCP",
            Provider::Azure => "Azure",
        }
    }

    /// What a region name of this provider looks like, for messages.
    fn region_example(self) -> &'static str {
        match self {
            Provider::Aws => "us-east-1",
            Provider::Gcp => "us-east1",
            Provider::Azure => "eastus",
        }
    }

    /// The known region names of this provider.
    pub fn regions(self) -> &'static [&'static str] {
        match self {
            Provider::Aws => AWS_REGIONS,
            Provider::Gcp => GCP_REGIONS,
            Provider::Azure => AZURE_REGIONS,
        }
    }

    pub fn is_region(self, region: &str) -> bool {
        self.regions().contains(&region)
    }
}

impl FromStr for Provider {
    type Err = ProviderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ProviderError { input: quote(s) })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::serde_as_string!(Provider);

/// Validate a region name for `provider`; errors are on `field`. When the name is a region of
/// another provider the message says so ("us-east1 is a GCP region; AWS regions look like
/// us-east-1").
pub fn validate_region(provider: Provider, region: &str, field: &str) -> Result<(), FieldError> {
    if provider.is_region(region) {
        return Ok(());
    }
    let name = provider.display_name();
    let example = provider.region_example();
    let message = if region.is_empty() {
        format!("region is empty; give a {name} region such as {example}")
    } else if let Some(other) = Provider::ALL
        .into_iter()
        .find(|p| *p != provider && p.is_region(region))
    {
        let article = if other == Provider::Gcp { "a" } else { "an" };
        format!(
            "{region} is {article} {} region; {name} regions look like {example}",
            other.display_name()
        )
    } else if provider.is_region(&region.to_ascii_lowercase()) {
        format!(
            "{} is not a {name} region name; region names are lower-case: {}",
            quote(region),
            region.to_ascii_lowercase()
        )
    } else {
        format!(
            "{} is not a known {name} region; {name} regions look like {example}",
            quote(region)
        )
    };
    Err(FieldError::new(field, message))
}

/// AWS commercial regions (partition `aws`).
static AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Google Cloud regions.
static GCP_REGIONS: &[&str] = &[
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "asia-southeast3",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west10",
    "europe-west12",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
];

/// Azure public cloud regions (programmatic names).
static AZURE_REGIONS: &[&str] = &[
    "australiacentral",
    "australiacentral2",
    "australiaeast",
    "australiasoutheast",
    "austriaeast",
    "belgiumcentral",
    "brazilsouth",
    "brazilsoutheast",
    "canadacentral",
    "canadaeast",
    "centralindia",
    "centralus",
    "chilecentral",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "francesouth",
    "germanynorth",
    "germanywestcentral",
    "indonesiacentral",
    "israelcentral",
    "italynorth",
    "japaneast",
    "japanwest",
    "jioindiacentral",
    "jioindiawest",
    "koreacentral",
    "koreasouth",
    "malaysiawest",
    "mexicocentral",
    "newzealandnorth",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "norwaywest",
    "polandcentral",
    "qatarcentral",
    "southafricanorth",
    "southafricawest",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "swedensouth",
    "switzerlandnorth",
    "switzerlandwest",
    "uaecentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westindia",
    "westus",
    "westus2",
    "westus3",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_parse() {
        assert_eq!("AWS".parse(), Ok(Provider::Aws));
        assert_eq!("GCP".parse(), Ok(Provider::Gcp));
        assert_eq!("AZURE".parse(), Ok(Provider::Azure));
        let err = "aws".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("\"AWS\", \"GCP\", \"AZURE\""), "{err}");
        assert!("Azure".parse::<Provider>().is_err());
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
    }

    #[test]
    fn region_lists_are_sorted_unique_and_disjoint() {
        for p in Provider::ALL {
            let list = p.regions();
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "{p} list not sorted/unique"
            );
            for other in Provider::ALL.into_iter().filter(|o| *o != p) {
                assert!(
                    list.iter().all(|r| !other.is_region(r)),
                    "{p} and {other} overlap"
                );
            }
        }
    }

    #[test]
    fn regions_table() {
        let ok = [
            (Provider::Aws, "us-east-1"),
            (Provider::Aws, "us-east-2"),
            (Provider::Aws, "us-west-2"),
            (Provider::Aws, "eu-west-1"),
            (Provider::Aws, "eu-central-1"),
            (Provider::Aws, "ap-southeast-1"),
            (Provider::Gcp, "us-east1"),
            (Provider::Gcp, "us-central1"),
            (Provider::Gcp, "europe-west1"),
            (Provider::Azure, "eastus"),
            (Provider::Azure, "eastus2"),
            (Provider::Azure, "westeurope"),
            (Provider::Azure, "centralus"),
        ];
        for (p, r) in ok {
            assert_eq!(validate_region(p, r, "region"), Ok(()), "{p} {r}");
        }
        let bad = [
            (
                Provider::Aws,
                "us-east1",
                "us-east1 is a GCP region; AWS regions look like us-east-1",
            ),
            (
                Provider::Gcp,
                "us-east-1",
                "us-east-1 is an AWS region; GCP regions look like us-east1",
            ),
            (
                Provider::Aws,
                "eastus",
                "eastus is an Azure region; AWS regions look like us-east-1",
            ),
            (
                Provider::Azure,
                "us-central1",
                "GCP region; Azure regions look like eastus",
            ),
            (Provider::Aws, "US-EAST-1", "lower-case: us-east-1"),
            (Provider::Aws, "mars-north-1", "not a known AWS region"),
            (Provider::Gcp, "", "region is empty"),
        ];
        for (p, r, msg) in bad {
            let err = validate_region(p, r, "cluster.region").unwrap_err();
            assert_eq!(err.field, "cluster.region");
            assert!(err.message.contains(msg), "{p} {r}: {}", err.message);
        }
    }
}

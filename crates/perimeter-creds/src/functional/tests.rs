//! Purposes, templates and their expansion.

use super::*;

const CLUSTER: ClusterIdentity<'static> = ClusterIdentity {
    cluster_id: "6f1c3a8e-2b4d-4e5f-9a0b-1c2d3e4f5a6b",
    account_id: "210987654321",
};

fn template(s: &str) -> RoleTemplate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn purposes() {
    for ok in ["backup", "changefeed", "a", "export-2", &"a".repeat(32)] {
        let p: RolePurpose = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(p.as_str(), ok);
    }
    assert!("backup".parse::<RolePurpose>().unwrap().is_well_known());
    assert!(!"export".parse::<RolePurpose>().unwrap().is_well_known());
    for bad in [
        "",
        "Backup",
        "1backup",
        "-backup",
        "back_up",
        "back up",
        "backup.",
        "bäckup",
        &"a".repeat(33),
    ] {
        assert_eq!(
            bad.parse::<RolePurpose>(),
            Err(FunctionalRoleError::Purpose),
            "{bad:?}"
        );
    }
}

#[test]
fn expands_the_cockroachdb_dedicated_roles_with_a_real_cluster_id() {
    let backup = template("arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}");
    assert!(backup.names_cluster());
    let arn = backup.expand(&CLUSTER).expect("fits");
    assert_eq!(
        arn.to_string(),
        "arn:aws:iam::123456789012:role/crl-dr-store-user-6f1c3a8e-2b4d-4e5f-9a0b-1c2d3e4f5a6b"
    );
    assert_eq!(arn.to_string(), backup.render(&CLUSTER));
    assert_eq!(arn.name().len(), 54);
    let cdc = template("arn:aws:iam::{account_id}:role/ops/crl-cdc-sink-user-{cluster_id}");
    let arn = cdc.expand(&CLUSTER).expect("fits");
    assert_eq!(arn.account(), "210987654321");
    assert_eq!(
        arn.name(),
        "ops/crl-cdc-sink-user-6f1c3a8e-2b4d-4e5f-9a0b-1c2d3e4f5a6b"
    );
    assert_eq!(cdc.as_str(), cdc.to_string());
    let fixed = template("arn:aws-us-gov:iam::123456789012:role/shared");
    assert!(!fixed.names_cluster());
    assert_eq!(
        fixed.expand(&CLUSTER).unwrap().to_string(),
        "arn:aws-us-gov:iam::123456789012:role/shared"
    );
}

#[test]
fn refuses_unknown_placeholders_and_stray_braces_naming_them() {
    let cases: &[(&str, FunctionalRoleError)] = &[
        (
            "arn:aws:iam::123456789012:role/x-{cluster}",
            FunctionalRoleError::UnknownPlaceholder("{cluster}".into()),
        ),
        (
            "arn:aws:iam::123456789012:role/x-{}",
            FunctionalRoleError::UnknownPlaceholder("{}".into()),
        ),
        (
            "arn:aws:iam::123456789012:role/x-{Cluster_Id}",
            FunctionalRoleError::UnknownPlaceholder("{Cluster_Id}".into()),
        ),
        (
            "arn:aws:iam::123456789012:role/x-{cluster_id",
            FunctionalRoleError::StrayBrace { brace: '{', at: 33 },
        ),
        (
            "arn:aws:iam::123456789012:role/x-cluster_id}",
            FunctionalRoleError::StrayBrace { brace: '}', at: 43 },
        ),
        (
            "arn:aws:iam::123456789012:role/x-{{cluster_id}}",
            FunctionalRoleError::StrayBrace { brace: '{', at: 33 },
        ),
        (
            "arn:aws:iam::123456789012:role/{cluster_id}}",
            FunctionalRoleError::StrayBrace { brace: '}', at: 43 },
        ),
    ];
    for (t, want) in cases {
        assert_eq!(t.parse::<RoleTemplate>().as_ref(), Err(want), "{t}");
    }
    let e = "arn:aws:iam::123456789012:role/x-{cluster}"
        .parse::<RoleTemplate>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("{cluster}") && e.contains("{cluster_id}"), "{e}");
    let long = format!("arn:aws:iam::123456789012:role/{{{}}}", "n".repeat(100));
    let e = long.parse::<RoleTemplate>().unwrap_err().to_string();
    assert!(e.contains(&format!("{{{}...}}", "n".repeat(40))), "{e}");
    assert!(!e.contains(&"n".repeat(41)), "{e}");
}

#[test]
fn refuses_what_does_not_expand_to_a_role_arn() {
    for bad in [
        "arn:aws:iam::123456789012:user/crl-{cluster_id}",
        "arn:aws:s3:::bucket-{cluster_id}",
        "arn:aws:iam::12345:role/x",
        "crl-dr-store-user-{cluster_id}",
        "arn:aws:iam::123456789012:role/{cluster_id} x",
    ] {
        let e = bad.parse::<RoleTemplate>().unwrap_err();
        assert!(
            matches!(e, FunctionalRoleError::NotRoleArn(_)),
            "{bad}: {e}"
        );
        assert!(e.to_string().starts_with("once expanded"), "{e}");
    }
    assert_eq!("".parse::<RoleTemplate>(), Err(FunctionalRoleError::Empty));
    assert_eq!(
        format!("arn:aws:iam::123456789012:role/{}", "a/".repeat(1100)).parse::<RoleTemplate>(),
        Err(FunctionalRoleError::TooLong)
    );
}

#[test]
fn the_role_name_must_fit_with_a_real_cluster_id() {
    // 29 + 36 = 65 characters once a UUID is in: refused at parse time already.
    let e = "arn:aws:iam::123456789012:role/crl-disaster-recovery-stores-{cluster_id}"
        .parse::<RoleTemplate>()
        .unwrap_err();
    assert_eq!(
        e,
        FunctionalRoleError::NameTooLong {
            len: 65,
            id_len: 36
        }
    );
    // 28 + 36 = 64: the limit itself fits.
    let t = template(&format!(
        "arn:aws:iam::123456789012:role/{}{{cluster_id}}",
        "r".repeat(28)
    ));
    assert_eq!(t.expand(&CLUSTER).unwrap().name().len(), 64);
    // The path does not count towards the name.
    template(&format!(
        "arn:aws:iam::123456789012:role/{}/crl-{{cluster_id}}",
        "p".repeat(100)
    ));
}

#[test]
fn expansion_checks_the_real_identity() {
    let t = template("arn:aws:iam::{account_id}:role/crl-dr-store-user-{cluster_id}");
    // A GCP or Azure cluster's account id is no AWS account.
    let gcp = ClusterIdentity {
        cluster_id: CLUSTER.cluster_id,
        account_id: "perimeter-0a1b2c3d",
    };
    let e = t.expand(&gcp).unwrap_err();
    assert!(matches!(e, FunctionalRoleError::NotRoleArn(_)), "{e}");
    assert!(!e.to_string().contains("perimeter-0a1b2c3d"), "{e}");
    // An id longer than a UUID can push the name past IAM's limit.
    let t = template("arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}");
    let long = ClusterIdentity {
        cluster_id: &"c".repeat(47),
        account_id: CLUSTER.account_id,
    };
    assert_eq!(
        t.expand(&long),
        Err(FunctionalRoleError::NameTooLong {
            len: 65,
            id_len: 47
        })
    );
}

proptest::proptest! {
    /// Whatever the input, parsing does not panic; an accepted template expands, for a
    /// UUID cluster id, to a role ARN with no brace left and the same text as `render`.
    #[test]
    fn parse_never_panics_and_accepted_templates_expand(
        s in "(arn:aws:iam::(123456789012|\\{account_id\\}):role/)?[a-z{}_/-]{0,40}(\\{cluster_id\\})?"
    ) {
        if let Ok(t) = s.parse::<RoleTemplate>() {
            let arn = t.expand(&CLUSTER).expect("accepted templates expand");
            proptest::prop_assert_eq!(arn.to_string(), t.render(&CLUSTER));
            let braced = arn.to_string().contains(['{', '}']);
            proptest::prop_assert!(!braced, "braces left in {}", arn);
        }
    }
}

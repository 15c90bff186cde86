//! Unit tests of `passwd`.

use super::*;
use proptest::prelude::*;

const HORSE: &[u8] = b"correct horse battery staple";
const UMLAUT: &[u8] = "pässwörd".as_bytes();

/// `(field, right password)`. Every vector was made by an outside implementation, named
/// beside it, not by this code.
const VECTORS: &[(&str, &[u8])] = &[
    // openssl 3.0 `openssl passwd -6 -salt Zq3vLx9PqWm2Rt8K 'correct horse battery staple'`
    (
        "{SHA512-CRYPT}$6$Zq3vLx9PqWm2Rt8K$h9i7vpvvNSxgPcZ.aw3rrcAWC5LXgCl18iTvW2s.7Jz4TdOVdwI9cCfqlnsRyhl7y0XYagj2Fyd/TqoNCU9aZ/",
        HORSE,
    ),
    // `openssl passwd -6 -salt short 'pässwörd'` (UTF-8)
    (
        "{SHA512-CRYPT}$6$short$8PxE01Domb6dcxeQtCxLibybOXj32CQeToNgt9Pwl9wf/GmpnVKsiWm8Srr87eCmFRgpWY3tWNsL1YIVCAfz31",
        UMLAUT,
    ),
    // Drepper's SHA-crypt specification, also `openssl passwd -6 -salt saltstring`
    (
        "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        b"Hello world!",
    ),
    // `openssl passwd -6 -salt toolongsaltstring_20chars hunter2`: salt cut to 16
    (
        "{SHA512-CRYPT}$6$toolongsaltstrin$4BUK.HfBqDDj7YQvYBZHnoqg0bljK.wMUU21cVR.8W/Yol3QAdvPpPLIYwBbQiXc4vJJd5hNjG4.ufj2CLnOG/",
        b"hunter2",
    ),
    // mkpasswd (whois 5.5, libxcrypt) `-m sha-512 -R 10000 -S mkpSaltForTest01`
    (
        "{SHA512-CRYPT}$6$rounds=10000$mkpSaltForTest01$Xu59XS/x9dX0.Eg6Ggx29GLryM6ORFn0j4QQ4TbDWARZVEzvjblCWrFKo/BlNuE.PO3CMzseZ8BcIGTHHx6cL0",
        HORSE,
    ),
    // mkpasswd `-m sha-512 -R 5000 -S abcdefgh x`: an explicit default round count
    (
        "{sha512-crypt}$6$rounds=5000$abcdefgh$D7W7qyozKBT.t6FD3DVYHvADbIO0eSyI4.p20LaEUjro8PqTGYYo/EQcuNjhFbzo9Yg5ir1KIEqFY/yJpgFph0",
        b"x",
    ),
    // mkpasswd `-m sha-512 -S mkpSalt3 hunter2`
    (
        "{SHA512-CRYPT}$6$mkpSalt3$dltTvHVcP7fJ/JmAO63GqF/yqtEtGzRtpsdhRgCp5X1n/UnbMOH3JgWvlcExeMZbBGKsSBVpkXlHhEmdJpPcB/",
        b"hunter2",
    ),
    // Python 3.11 crypt (libxcrypt) `crypt('', '$6$abc')`: empty password
    (
        "{SHA512-CRYPT}$6$abc$mJP3a6FyA8uCnzRtlnNypPwjnvpi5TP9qOrInzrfDmwxUQG38PkpCPdqfTb8JQfAngapMxeim4AZ..hSdRRzD.",
        b"",
    ),
    // Python crypt (libxcrypt) `crypt('x', '$6$$')`: empty salt
    (
        "{SHA512-CRYPT}$6$$KvRrc0bxRLyTUhO8OJOmRczh7oCol5BACiR8rmdfVzvuGgm8JmLDumsL/ah.jFtT.DswxoP9Nv3ByfU4j5hm/0",
        b"x",
    ),
    // Python crypt (libxcrypt) `crypt('x', '$6$a~b$')`: salt outside the base-64 alphabet
    (
        "{SHA512-CRYPT}$6$a~b$N1czPPpNKXmT4XsXmpDNqj6y0y.QLBEJXM5eOVD6IWGLpZ.uAOmNmxSzxfml3LYzARQ6hE87lofFi8wZOLXQl1",
        b"x",
    ),
    // `openssl passwd -5 -salt Zq3vLx9PqWm2Rt8K 'correct horse battery staple'`
    (
        "{SHA256-CRYPT}$5$Zq3vLx9PqWm2Rt8K$bSCacXJWabnxHJQ16bF5obwD8YW.4ug1pHhC3PW8Y.7",
        HORSE,
    ),
    // `openssl passwd -5 -salt a.b/C9 'pässwörd'`
    (
        "{SHA256-CRYPT}$5$a.b/C9$fu4FdyUMHcavcspKOPyD2jk.RnrgbcVlBVAQvxR7ZlB",
        UMLAUT,
    ),
    // Drepper's specification, also `openssl passwd -5 -salt saltstring 'Hello world!'`
    (
        "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
        b"Hello world!",
    ),
    // mkpasswd `-m sha-256 -R 12345 -S mkpSaltForTest02`
    (
        "{SHA256-CRYPT}$5$rounds=12345$mkpSaltForTest02$sHOdct2un.oknE5WZelsidxdsRT1NbNxqi9ertqvtp2",
        HORSE,
    ),
    // Python crypt (libxcrypt) `crypt('', '$5$rounds=1000$emptypw')`
    (
        "{SHA256-CRYPT}$5$rounds=1000$emptypw$R/wgStrZGb87DR54ZFXPAjKAgm.1oPmQZlw4WtZza5B",
        b"",
    ),
    // apache2-utils 2.4 `htpasswd -bnBC 10 "" 'correct horse battery staple'`
    (
        "{BLF-CRYPT}$2y$10$QEXBB8v.1Q947KTOm.j6A.sb.0F2pMWvEOwccLSrIF8j3yMLp2Uvi",
        HORSE,
    ),
    // `htpasswd -bnBC 4 "" hunter2`
    (
        "{BLF-CRYPT}$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue",
        b"hunter2",
    ),
    // mkpasswd `-m bcrypt -R 5 'pässwörd'`
    (
        "{blf-crypt}$2b$05$0T01N5A4FEzLJrezo0JYxOSA5jbCgGmZQThmk/hDjzvJX5Cx0YRbG",
        UMLAUT,
    ),
    // mkpasswd `-m bcrypt-a -R 6 hunter2`
    (
        "{BLF-CRYPT}$2a$06$OrmGmYiFgoifpAey2pQxE.Vb.uW5qIUanBdL1l0/sgqDu5hFBrOEa",
        b"hunter2",
    ),
    // Argon2 reference CLI (Debian `argon2` 20190702):
    // `argon2 postern-salt-01 -id -t 2 -k 4096 -p 1 -e`
    (
        "{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$cG9zdGVybi1zYWx0LTAx$tiDjzEi8j26lbGehwAc7+O6+XNYaI6CP3JOM42Fx4+E",
        HORSE,
    ),
    // `argon2 saltsaltsalt -id -t 1 -k 1024 -p 1 -e` of 'pässwörd'
    (
        "{Argon2id}$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$Iez4zKuz/2bwdPJ79KbO44uyiW7La71FKcwIj29Ef6s",
        UMLAUT,
    ),
    // `argon2 postern-salt-02 -i -t 3 -k 4096 -p 2 -e`
    (
        "{ARGON2I}$argon2i$v=19$m=4096,t=3,p=2$cG9zdGVybi1zYWx0LTAy$XqBfzRDq1tWu7eDVQpIZ9JNtuOuWu8/czIG7l+SpHIw",
        HORSE,
    ),
    // phc-winner-argon2 src/test.c, version 0x10 (no `v=`), m=256
    (
        "{ARGON2I}$argon2i$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY",
        b"password",
    ),
    (
        "{ARGON2I}$argon2i$m=256,t=2,p=2$c29tZXNhbHQ$tsEVYKap1h6scGt5ovl9aLRGOqOth+AMB+KwHpDFZPs",
        b"password",
    ),
    // the same with an explicit `v=16` (reference CLI `-v 10`)
    (
        "{ARGON2I}$argon2i$v=16$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY",
        b"password",
    ),
    ("{PLAIN}hunter2", b"hunter2"),
    ("{plain}päss w#rd", "päss w#rd".as_bytes()),
    ("{PLAIN}", b""),
];

/// phc-winner-argon2 src/test.c vectors at m=65536 (64 MiB).
const REFERENCE_64M: &[&str] = &[
    "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
    "{ARGON2I}$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
    "{ARGON2I}$argon2i$m=65536,t=2,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ",
];

#[test]
fn vectors_verify_right_and_reject_wrong_passwords() {
    for (field, right) in VECTORS {
        let p = StoredPassword::parse(field).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(p.verify(right), "{field} must accept its password");
        let longer = [right, &b"!"[..]].concat();
        assert!(!p.verify(&longer), "{field} accepted a longer password");
        assert!(!p.verify(b"wrong"), "{field} accepted `wrong`");
        let mut changed = right.to_vec();
        if let Some(first) = changed.first_mut() {
            *first ^= 1;
            assert!(!p.verify(&changed), "{field} accepted a changed password");
        } else {
            assert!(!p.verify(b" "), "{field} accepted a non-empty password");
        }
    }
}

#[test]
fn every_scheme_has_a_vector() {
    for scheme in Scheme::ALL {
        let n = VECTORS
            .iter()
            .filter(|(f, _)| StoredPassword::parse(f).map(|p| p.scheme()) == Ok(scheme))
            .count();
        assert!(n >= 2, "{scheme:?} has {n} vectors");
    }
}

#[test]
fn argon2_reference_vectors_64m() {
    for field in REFERENCE_64M {
        let p = StoredPassword::parse(field).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(p.verify(b"password"), "{field}");
        assert!(!p.verify(b"passwore"), "{field}");
    }
}

#[test]
fn scheme_names_round_trip_case_insensitively() {
    for scheme in Scheme::ALL {
        assert_eq!(Scheme::from_name(scheme.name()), Some(scheme));
        assert_eq!(
            Scheme::from_name(&scheme.name().to_lowercase()),
            Some(scheme)
        );
    }
    assert_eq!(Scheme::from_name("Blf-Crypt"), Some(Scheme::BlfCrypt));
    assert_eq!(Scheme::from_name("CRYPT"), None);
    assert_eq!(Scheme::from_name(""), None);
}

#[test]
fn to_field_normalises_the_scheme_name_and_keeps_the_hash() {
    let p = StoredPassword::parse(
        "{blf-crypt}$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue",
    )
    .unwrap();
    assert_eq!(
        p.to_field(),
        "{BLF-CRYPT}$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue"
    );
    assert_eq!(format!("{p:?}"), "StoredPassword({BLF-CRYPT}...)");
    for (field, _) in VECTORS {
        let p = StoredPassword::parse(field).unwrap();
        assert_eq!(StoredPassword::parse(&p.to_field()), Ok(p));
    }
}

#[test]
fn hash_password_round_trips_for_every_scheme() {
    for scheme in Scheme::ALL {
        let stored = hash_password(scheme, HORSE).unwrap();
        assert_eq!(stored.scheme(), scheme);
        let reparsed = StoredPassword::parse(&stored.to_field()).unwrap();
        assert!(reparsed.verify(HORSE), "{scheme:?}");
        assert!(
            !reparsed.verify(b"correct horse battery stapler"),
            "{scheme:?}"
        );
        assert!(!reparsed.verify(b""), "{scheme:?}");
    }
}

#[test]
fn hash_password_uses_the_documented_defaults_and_fresh_salts() {
    let a = hash_password(Scheme::Sha512Crypt, b"pw")
        .unwrap()
        .to_field();
    let b = hash_password(Scheme::Sha512Crypt, b"pw")
        .unwrap()
        .to_field();
    assert_ne!(a, b, "salts must differ");
    // `$6$` + 16 salt characters + `$` + 86 digest characters, no `rounds=`.
    let hash = a.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
    assert_eq!(hash.len(), 16 + 1 + 86, "{a}");
    assert!(!a.contains("rounds="));
    let s256 = hash_password(Scheme::Sha256Crypt, b"pw")
        .unwrap()
        .to_field();
    assert_eq!(
        s256.strip_prefix("{SHA256-CRYPT}$5$").unwrap().len(),
        16 + 1 + 43
    );
    let blf = hash_password(Scheme::BlfCrypt, b"pw").unwrap().to_field();
    assert!(blf.starts_with("{BLF-CRYPT}$2y$10$"), "{blf}");
    let id = hash_password(Scheme::Argon2id, b"pw").unwrap().to_field();
    assert!(
        id.starts_with("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"),
        "{id}"
    );
    let i = hash_password(Scheme::Argon2i, b"pw").unwrap().to_field();
    assert!(
        i.starts_with("{ARGON2I}$argon2i$v=19$m=19456,t=2,p=1$"),
        "{i}"
    );
    assert_eq!(
        hash_password(Scheme::Plain, b"pw").unwrap().to_field(),
        "{PLAIN}pw"
    );
}

#[test]
fn sha_crypt_hashes_match_a_reference_with_the_same_salt() {
    // Recompute the openssl vector through the generator's own encoding path.
    let digest = sha_crypt_digest(ShaVariant::Sha512, HORSE, "Zq3vLx9PqWm2Rt8K", None);
    assert!(VECTORS[0].0.ends_with(&digest));
    let digest = sha_crypt_digest(ShaVariant::Sha256, b"Hello world!", "saltstring", None);
    assert_eq!(digest, "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5");
}

#[test]
fn hash_password_refuses_what_it_cannot_store() {
    let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
    assert_eq!(
        hash_password(Scheme::Sha512Crypt, &long),
        Err(PasswdError::TooLong)
    );
    assert!(hash_password(Scheme::Plain, &vec![b'a'; MAX_PASSWORD_LEN]).is_ok());
    assert!(matches!(
        hash_password(Scheme::Plain, b"a:b"),
        Err(PasswdError::Hash(_))
    ));
    assert!(matches!(
        hash_password(Scheme::Plain, b"a\nb"),
        Err(PasswdError::Hash(_))
    ));
    assert!(matches!(
        hash_password(Scheme::Plain, b"\xff"),
        Err(PasswdError::Hash(_))
    ));
    assert!(matches!(
        hash_password(Scheme::Plain, b"pw "),
        Err(PasswdError::Hash(_))
    ));
    assert!(hash_password(Scheme::Plain, b" p w").is_ok());
}

#[test]
fn over_long_passwords_never_verify() {
    let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
    let field = format!("{{PLAIN}}{}", "a".repeat(MAX_PASSWORD_LEN + 1));
    assert!(!StoredPassword::parse(&field).unwrap().verify(&long));
    let field = format!("{{PLAIN}}{}", "a".repeat(MAX_PASSWORD_LEN));
    assert!(StoredPassword::parse(&field).unwrap().verify(&long[1..]));
}

#[test]
fn bcrypt_truncates_at_72_bytes_like_every_bcrypt() {
    let stored = hash_password(Scheme::BlfCrypt, &[b'x'; 72]).unwrap();
    assert!(stored.verify(&[b'x'; 80]));
    assert!(!stored.verify(&[b'x'; 71]));
}

#[test]
fn plain_compares_exactly() {
    let p = StoredPassword::parse("{PLAIN}Secret").unwrap();
    assert!(p.verify(b"Secret"));
    assert!(!p.verify(b"secret"));
    assert!(!p.verify(b"Secre"));
    assert!(!p.verify(b"Secret\0"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"", b"\0"));
}

fn malformed(scheme: &'static str) -> Result<StoredPassword, PasswdError> {
    Err(PasswdError::Malformed { scheme })
}

#[test]
fn parse_errors_name_the_problem() {
    let parse = StoredPassword::parse;
    assert_eq!(parse(""), Err(PasswdError::MissingScheme));
    assert_eq!(parse("hunter2"), Err(PasswdError::MissingScheme));
    assert_eq!(parse("$6$salt$hash"), Err(PasswdError::MissingScheme));
    assert_eq!(parse("{PLAIN"), Err(PasswdError::MissingScheme));
    assert_eq!(parse(" {PLAIN}x"), Err(PasswdError::MissingScheme));
    assert_eq!(
        parse("{MD5-CRYPT}$1$x$y"),
        Err(PasswdError::UnknownScheme("MD5-CRYPT".into()))
    );
    assert_eq!(parse("{}x"), Err(PasswdError::UnknownScheme(String::new())));
    assert_eq!(
        parse("{ PLAIN}x"),
        Err(PasswdError::UnknownScheme(" PLAIN".into()))
    );
    let msg = parse("{SSHA}x").unwrap_err().to_string();
    assert!(
        msg.contains("\"SSHA\"") && msg.contains("SHA512-CRYPT"),
        "{msg}"
    );
    assert_eq!(
        parse("{SHA512-CRYPT}x").unwrap_err().to_string(),
        "malformed SHA512-CRYPT hash"
    );
}

#[test]
fn malformed_sha_crypt_hashes_are_refused() {
    let good = "$6$Zq3vLx9PqWm2Rt8K$h9i7vpvvNSxgPcZ.aw3rrcAWC5LXgCl18iTvW2s.7Jz4TdOVdwI9cCfqlnsRyhl7y0XYagj2Fyd/TqoNCU9aZ/";
    let digest = good.rsplit('$').next().unwrap();
    let bad = [
        String::new(),
        good.replacen("$6$", "$5$", 1),
        good.replacen("$6$", "$1$", 1),
        good[..good.len() - 1].to_string(),
        format!("{good}A"),
        format!("{good}$"),
        good.replacen('h', "*", 1),
        format!("$6$rounds=999$abc${digest}"),
        format!("$6$rounds=1000000000$abc${digest}"),
        format!("$6$rounds=05000$abc${digest}"),
        format!("$6$rounds=+5000$abc${digest}"),
        format!("$6$rounds=$abc${digest}"),
        format!("$6$rounds=5000${digest}"),
        format!("$6$abcdefghijklmnopq${digest}"),
        format!("$6$a!b${digest}"),
        format!("$6$a b${digest}"),
        format!("$6$a:b${digest}"),
        format!("$6$abc${}", &digest[..85]),
        // the last character carries 2 bits: `/` is 1, `0` is 2, `1` is 3, `2` is 4
        format!("$6$abc${}2", &digest[..85]),
    ];
    for hash in &bad {
        assert_eq!(
            StoredPassword::parse(&format!("{{SHA512-CRYPT}}{hash}")),
            malformed("SHA512-CRYPT"),
            "{hash}"
        );
    }
    assert!(StoredPassword::parse(&format!("{{SHA512-CRYPT}}$6$abc${}1", &digest[..85])).is_ok());
    assert_eq!(
        StoredPassword::parse(
            "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEcG"
        ),
        malformed("SHA256-CRYPT")
    );
    assert_eq!(
        StoredPassword::parse(&format!("{{SHA256-CRYPT}}{good}")),
        malformed("SHA256-CRYPT")
    );
}

#[test]
fn malformed_bcrypt_hashes_are_refused() {
    let good = "$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue";
    let bad = [
        String::new(),
        good.replacen("$2y$", "$2x$", 1),
        good.replacen("$2y$", "$2c$", 1),
        good.replacen("$04$", "$03$", 1),
        good.replacen("$04$", "$32$", 1),
        good.replacen("$04$", "$+4$", 1),
        good.replacen("$04$", "$4$", 1),
        good[..good.len() - 1].to_string(),
        format!("{good}e"),
        good.replacen('M', "!", 1),
        good.replacen('M', "é", 1),
    ];
    for hash in &bad {
        assert_eq!(
            StoredPassword::parse(&format!("{{BLF-CRYPT}}{hash}")),
            malformed("BLF-CRYPT"),
            "{hash}"
        );
    }
}

#[test]
fn malformed_argon2_hashes_are_refused() {
    let good = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$Iez4zKuz/2bwdPJ79KbO44uyiW7La71FKcwIj29Ef6s";
    let bad = [
        String::new(),
        good.replacen("argon2id", "argon2i", 1),
        good.replacen("argon2id", "argon2d", 1),
        good.replacen("v=19", "v=20", 1),
        good.replacen("m=1024", "m=1", 1),
        good.replacen("m=1024", "m=2000000", 1),
        good.replacen("t=1", "t=0", 1),
        good.replacen("p=1", "p=0", 1),
        good.replacen(",p=1", ",p=1,x=2", 1),
        good.replacen("c2FsdHNhbHRzYWx0", "c2FsdA", 1),
        good.replacen("c2FsdHNhbHRzYWx0", "!!!", 1),
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0".to_string(),
        "$argon2id$v=19$m=1024,t=1,p=1".to_string(),
        format!("{good}$x"),
        good[..good.len() - 2].to_string() + "!!",
    ];
    for hash in &bad {
        assert_eq!(
            StoredPassword::parse(&format!("{{ARGON2ID}}{hash}")),
            malformed("ARGON2ID"),
            "{hash}"
        );
    }
    assert_eq!(
        StoredPassword::parse(&format!("{{ARGON2I}}{good}")),
        malformed("ARGON2I")
    );
}

#[test]
fn plain_fields_the_users_file_cannot_hold_are_refused() {
    for field in ["{PLAIN}a:b", "{PLAIN}a\nb", "{PLAIN}a\r"] {
        assert_eq!(
            StoredPassword::parse(field),
            malformed("PLAIN"),
            "{field:?}"
        );
    }
}

/// A valid field, a position in the part after its parameters (so a mutation cannot raise
/// a cost and make the test slow), and a replacement character.
fn mutated_vector() -> impl Strategy<Value = String> {
    (
        0..VECTORS.len(),
        any::<prop::sample::Index>(),
        any::<char>(),
    )
        .prop_map(|(i, at, c)| {
            let field = VECTORS[i].0;
            let tail_start = field
                .rfind('$')
                .map_or(field.find('}').unwrap_or(0), |p| p + 1);
            let tail: Vec<char> = field[tail_start..].chars().collect();
            if tail.is_empty() {
                return format!("{field}{c}");
            }
            let mut tail = tail;
            let at = at.index(tail.len());
            tail[at] = c;
            format!(
                "{}{}",
                &field[..tail_start],
                tail.into_iter().collect::<String>()
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = StoredPassword::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_scheme_plus_dollar_garbage(
        scheme in prop::sample::select(Scheme::ALL.to_vec()),
        hash in "[$0-9a-zA-Z./=,+!:~ -]{0,120}",
    ) {
        let _ = StoredPassword::parse(&format!("{{{}}}{hash}", scheme.name()));
    }

    #[test]
    fn garbage_never_verifies(s in "\\PC{0,100}", pw in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(p) = StoredPassword::parse(&s) {
            let _ = p.verify(&pw);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_vectors_never_panic(field in mutated_vector(), pw in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(p) = StoredPassword::parse(&field) {
            prop_assert_eq!(StoredPassword::parse(&p.to_field()), Ok(p.clone()));
            let _ = p.verify(&pw);
        }
    }
}

//! The conformance suite: for RFC 5228 and each extension, scripts run
//! on a sample message with the actions they must produce. The message
//! and the one-line action summaries are in `common/mod.rs`.

mod common;

use common::*;
use mailgate_sieve::{compile, execute, Action, HeaderEdit, MessageData, Settings};

const KEEP: &[&str] = &["implicit-keep"];
const YES: &[&str] = &["fileinto yes"];

/// `if TEST { fileinto "yes"; }` with the requires a test needs.
fn probe(requires: &str, test: &str) -> String {
    format!("require [\"fileinto\"{requires}]; if {test} {{ fileinto \"yes\"; }}")
}

fn check(requires: &str, cases: &[(&str, bool)]) {
    for (test, want) in cases {
        let script = probe(requires, test);
        let got = run(&script).unwrap_or_else(|e| panic!("{script}: {e}"));
        let expected: &[&str] = if *want { YES } else { KEEP };
        assert_eq!(summary(&got), expected, "test: {test}");
    }
}

#[test]
fn rfc5228_basics() {
    table(&[
        ("", KEEP),
        ("# only a comment\n/* and another */", KEEP),
        ("keep;", &["keep"]),
        ("keep; keep;", &["keep"]),
        ("discard;", &["discard"]),
        ("discard; keep;", &["discard", "keep"]),
        ("redirect \"x@example.com\";", &["redirect x@example.com"]),
        (
            "redirect \"x@example.com\"; redirect \"X@example.com\";",
            &["redirect x@example.com"],
        ),
        ("stop; discard;", KEEP),
        ("if true { stop; } discard;", KEEP),
        (
            "if false { discard; } elsif true { keep; } else { stop; }",
            &["keep"],
        ),
        (
            "if false { discard; } elsif false { keep; } else { discard; }",
            &["discard"],
        ),
        (
            "require \"fileinto\"; fileinto \"A\"; fileinto \"A\";",
            &["fileinto A"],
        ),
        (
            "require \"fileinto\"; fileinto \"A\"; keep;",
            &["fileinto A", "keep"],
        ),
    ]);
}

#[test]
fn rfc5228_tests() {
    check(
        "",
        &[
            ("header :is \"subject\" \"Grüße [acme-users] hello\"", true),
            ("header :contains \"Subject\" \"ACME-users\"", true),
            (
                "header :contains :comparator \"i;octet\" \"Subject\" \"ACME\"",
                false,
            ),
            ("header :matches \"subject\" \"*[acme-*] ?ello\"", true),
            ("header :matches \"subject\" \"*\\\\[acme*\"", true),
            ("header :contains \"X-Missing\" \"\"", false),
            ("header :contains \"subject\" \"\"", true),
            (
                "header :is [\"x-spam-score\", \"subject\"] [\"1\", \"12\"]",
                true,
            ),
            ("address :is \"from\" \"bob+lists@example.net\"", true),
            ("address :localpart \"from\" \"bob+lists\"", true),
            ("address :domain :is [\"to\", \"cc\"] \"example.com\"", true),
            ("address :all :contains \"to\" \"carol\"", true),
            ("address :is \"to\" \"Alice\"", false),
            ("exists [\"From\", \"Date\"]", true),
            ("exists [\"From\", \"X-Nope\"]", false),
            ("size :over 100", true),
            ("size :under 100", false),
            ("size :over 1K", false),
            ("not size :over 1K", true),
            ("allof (true, exists \"to\")", true),
            ("allof (true, false)", false),
            ("anyof (false, false)", false),
            ("anyof (false, header :contains \"from\" \"BOB\")", true),
            ("true", true),
        ],
    );
}

#[test]
fn rfc5228_encoded_words_are_decoded() {
    let msg = "Subject: =?ISO-8859-1?Q?Caf=E9?= au lait\r\nTo: =?UTF-8?B?w4lsb2RpZQ==?= <e@x.org>\r\n\r\nbody";
    let s = "require \"fileinto\"; if allof(header :is \"subject\" \"Café au lait\", address :is \"to\" \"e@x.org\") { fileinto \"yes\"; }";
    let got = run_full(s, msg, &TestEnv::default(), &Settings::default()).unwrap();
    assert_eq!(summary(&got), YES);
}

#[test]
fn envelope_rfc5228() {
    check(
        ", \"envelope\", \"subaddress\"",
        &[
            ("envelope :is \"from\" \"bob+lists@example.net\"", true),
            ("envelope :domain \"to\" \"example.org\"", true),
            ("envelope :user \"to\" \"alice\"", true),
            ("envelope :detail \"to\" \"sieve\"", true),
            ("envelope :detail \"from\" \"lists\"", true),
            ("envelope :localpart \"to\" \"alice\"", false),
        ],
    );
    // The null sender is "" whatever the part.
    let s = "require [\"envelope\", \"fileinto\"]; if envelope :domain \"from\" \"\" { fileinto \"yes\"; }";
    let script = compile(s, &Settings::default()).unwrap();
    let env = mailgate_sieve::Envelope {
        from: String::new(),
        to: "a@b".into(),
    };
    let got = execute(
        &script,
        &MessageData::new(MESSAGE),
        &env,
        &TestEnv::default(),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(summary(&got), YES);
}

#[test]
fn subaddress_rfc5233() {
    check(
        ", \"subaddress\"",
        &[
            ("address :user \"from\" \"bob\"", true),
            ("address :detail \"from\" \"lists\"", true),
            ("address :detail \"to\" \"\"", false),
            ("address :detail :matches \"to\" \"*\"", false),
        ],
    );
}

#[test]
fn fileinto_reject_ereject() {
    table(&[
        (
            "require \"fileinto\"; fileinto \"Lists/Acme\";",
            &["fileinto Lists/Acme"],
        ),
        (
            "require \"reject\"; reject \"go away\";",
            &["reject go away"],
        ),
        (
            "require \"ereject\"; ereject \"no thanks\";",
            &["ereject no thanks"],
        ),
        (
            "require \"reject\"; redirect \"a@b.org\"; reject \"x\";",
            &["redirect a@b.org", "reject x"],
        ),
    ]);
    for s in [
        "require \"reject\"; keep; reject \"x\";",
        "require [\"reject\", \"fileinto\"]; reject \"x\"; fileinto \"A\";",
        "require [\"reject\"]; reject \"x\"; reject \"y\";",
        "require [\"reject\", \"vacation\"]; reject \"x\"; vacation \"away\";",
    ] {
        let e = run(s).unwrap_err();
        assert!(e.to_string().contains("combined"), "{s}: {e}");
    }
}

#[test]
fn copy_rfc3894() {
    table(&[
        (
            "require [\"copy\", \"fileinto\"]; fileinto :copy \"Archive\";",
            &["fileinto Archive :copy", "implicit-keep"],
        ),
        (
            "require \"copy\"; redirect :copy \"x@example.com\";",
            &["redirect x@example.com :copy", "implicit-keep"],
        ),
    ]);
}

#[test]
fn mailbox_rfc5490() {
    table(&[(
        "require [\"fileinto\", \"mailbox\"]; fileinto :create \"New/Folder\";",
        &["fileinto New/Folder :create"],
    )]);
    let env = TestEnv {
        mailboxes: vec!["INBOX".into(), "Spam".into()],
        ..Default::default()
    };
    for (test, want) in [
        ("mailboxexists \"Spam\"", true),
        ("mailboxexists [\"Spam\", \"INBOX\"]", true),
        ("mailboxexists [\"Spam\", \"Nope\"]", false),
    ] {
        let got = run_full(
            &probe(", \"mailbox\"", test),
            MESSAGE,
            &env,
            &Settings::default(),
        )
        .unwrap();
        assert_eq!(summary(&got) == YES, want, "{test}");
    }
}

#[test]
fn imap4flags_rfc5232() {
    table(&[
        (
            "require [\"imap4flags\"]; setflag \"\\\\Seen\"; addflag [\"\\\\Flagged\", \"$Work \\\\seen\"];",
            &["implicit-keep flags=\\Seen,\\Flagged,$Work"],
        ),
        (
            "require [\"imap4flags\", \"fileinto\"]; addflag \"\\\\Seen\"; fileinto :flags \"\\\\Draft\" \"D\"; keep;",
            &["fileinto D flags=\\Draft", "keep flags=\\Seen"],
        ),
        (
            "require [\"imap4flags\"]; addflag \"a b c\"; removeflag \"B\"; keep;",
            &["keep flags=a,c"],
        ),
        (
            "require [\"imap4flags\", \"variables\"]; addflag \"f\" \"x y\"; if hasflag \"f\" \"y\" { keep :flags \"${f}\"; }",
            &["keep flags=x,y"],
        ),
    ]);
    check(
        ", \"imap4flags\", \"relational\", \"comparator-i;ascii-numeric\"",
        &[("hasflag \"\\\\Seen\"", false)],
    );
    let s = "require [\"imap4flags\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\
             setflag [\"a\", \"b\"]; if hasflag :count \"eq\" :comparator \"i;ascii-numeric\" \"2\" { fileinto \"yes\"; }";
    assert_eq!(summary(&run(s).unwrap()), ["fileinto yes flags=a,b"]);
}

#[test]
fn relational_rfc5231_and_numeric() {
    let r = ", \"relational\", \"comparator-i;ascii-numeric\"";
    check(
        r,
        &[
            (
                "header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"10\"",
                true,
            ),
            (
                "header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"12\"",
                false,
            ),
            (
                "header :value \"lt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"8\"",
                true,
            ),
            (
                "header :count \"eq\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"2\"",
                true,
            ),
            (
                "header :count \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"3\"",
                false,
            ),
            (
                "address :count \"eq\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\"",
                true,
            ),
            (
                "header :value \"eq\" :comparator \"i;ascii-numeric\" \"subject\" \"99999\"",
                false,
            ),
            (
                "header :is :comparator \"i;ascii-numeric\" \"x-spam-score\" \"0012\"",
                true,
            ),
            ("header :value \"ne\" \"subject\" \"x\"", true),
        ],
    );
}

#[test]
fn regex_draft() {
    check(
        ", \"regex\", \"variables\"",
        &[
            ("header :regex \"subject\" \"\\\\[[a-z-]+\\\\]\"", true),
            ("header :regex \"subject\" \"^hello\"", false),
            (
                "header :regex :comparator \"i;octet\" \"subject\" \"HELLO\"",
                false,
            ),
            ("header :regex \"subject\" \"HELLO$\"", true),
        ],
    );
    table(&[(
        "require [\"regex\", \"variables\", \"fileinto\"]; if header :regex \"list-id\" \"<([a-z-]+)\\\\.lists\" { fileinto \"L/${1}\"; }",
        &["fileinto L/acme-users"],
    )]);
}

#[test]
fn variables_rfc5229() {
    table(&[
        (
            "require [\"variables\", \"fileinto\"]; if header :matches \"List-Id\" \"*<*.lists.*>\" { fileinto \"Lists/${2}\"; }",
            &["fileinto Lists/acme-users"],
        ),
        (
            "require [\"variables\", \"fileinto\"]; if header :matches \"subject\" \"*[*] *\" { fileinto \"${2}-${3}-${0}\"; }",
            &["fileinto acme-users-hello-Grüße [acme-users] hello"],
        ),
        (
            "require [\"variables\", \"fileinto\"]; set :lower :upperfirst \"b\" \"juMBlEd\"; set \"a\" \"${b} ${B} ${undefined}|${0}\"; fileinto \"${a}\";",
            &["fileinto Jumbled Jumbled |"],
        ),
        (
            "require [\"variables\", \"fileinto\"]; set :length \"n\" \"Grüße\"; fileinto \"${n}\";",
            &["fileinto 5"],
        ),
        (
            "require [\"variables\", \"fileinto\"]; set :quotewildcard \"q\" \"a*b\"; if string :matches \"a*b\" \"${q}\" { fileinto \"lit\"; }",
            &["fileinto lit"],
        ),
        (
            "require [\"variables\", \"fileinto\"]; if string :is \"${nope}\" \"\" { fileinto \"empty\"; }",
            &["fileinto empty"],
        ),
        // A failing match leaves the match variables as they were.
        (
            "require [\"variables\", \"fileinto\"]; if header :matches \"subject\" \"*hello\" {} if header :matches \"subject\" \"nomatch*\" {} fileinto \"${1}\";",
            &["fileinto Grüße [acme-users] "],
        ),
        // Without `require "variables"` a reference is plain text.
        ("require \"fileinto\"; fileinto \"${x}\";", &["fileinto ${x}"]),
    ]);
    // Values are cut at max_variable_size.
    let settings = Settings {
        max_variable_size: 3,
        ..Settings::default()
    };
    let got = run_full(
        "require [\"variables\", \"fileinto\"]; set \"a\" \"abcdef\"; fileinto \"${a}\";",
        MESSAGE,
        &TestEnv::default(),
        &settings,
    )
    .unwrap();
    assert_eq!(summary(&got), ["fileinto abc"]);
}

#[test]
fn encoded_character_rfc5228() {
    table(&[(
        "require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:49 4e}${unicode:42 4f 58}\";",
        &["fileinto INBOX"],
    )]);
}

#[test]
fn body_rfc5173() {
    check(
        ", \"body\"",
        &[
            ("body :contains \"secret\"", true),
            ("body :contains :comparator \"i;octet\" \"secret\"", false),
            ("body :raw :contains \"SECRET word\"", true),
            ("body :content \"text\" :contains \"secret\"", true),
            ("body :content \"image/png\" :contains \"secret\"", false),
            ("body :text :matches \"*Hello Alice*\"", true),
        ],
    );
    let mime = "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/html\r\n\r\n<p>Price: <b>cheap</b></p>\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nY2hlYXA=\r\n--b--\r\n";
    let s =
        "require [\"body\", \"fileinto\"]; if body :text :contains \"cheap\" { fileinto \"yes\"; }";
    let got = run_full(s, mime, &TestEnv::default(), &Settings::default()).unwrap();
    assert_eq!(summary(&got), YES);
    let s = "require [\"body\", \"fileinto\"]; if body :content \"application\" :contains \"cheap\" { fileinto \"yes\"; }";
    let got = run_full(s, mime, &TestEnv::default(), &Settings::default()).unwrap();
    assert_eq!(summary(&got), KEEP, "binary parts have no text");
}

#[test]
fn date_and_index_rfc5260() {
    let d = ", \"date\", \"index\", \"relational\"";
    check(
        d,
        &[
            ("date :originalzone \"date\" \"date\" \"2005-08-14\"", true),
            ("date :zone \"+0000\" \"date\" \"time\" \"19:30:05\"", true),
            (
                "date :zone \"+0900\" \"date\" \"date\" \"2005-08-15\"",
                true,
            ),
            ("date :originalzone \"date\" \"weekday\" \"0\"", true),
            ("date :originalzone \"date\" \"zone\" \"-0700\"", true),
            (
                "date :value \"ge\" :originalzone \"date\" \"year\" \"2006\"",
                false,
            ),
            ("date \"date\" \"hour\" \"19\"", true),
            ("date \"x-nope\" \"hour\" \"19\"", false),
            ("currentdate :zone \"+0000\" \"date\" \"1970-01-01\"", true),
            ("header :index 2 \"x-spam-score\" \"12\"", true),
            ("header :index 1 :last \"x-spam-score\" \"12\"", true),
            ("header :index 1 \"x-spam-score\" \"12\"", false),
            ("header :index 3 \"x-spam-score\" \"12\"", false),
            ("address :index 1 :domain \"to\" \"example.org\"", true),
        ],
    );
    // The environment's clock and zone.
    let env = TestEnv {
        now: (86_400, 60),
        ..Default::default()
    };
    let got = run_full(
        &probe(
            ", \"date\"",
            "currentdate \"iso8601\" \"1970-01-02T01:00:00+01:00\"",
        ),
        MESSAGE,
        &env,
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(summary(&got), YES);
}

#[test]
fn vacation_rfc5230_and_seconds_rfc6131() {
    let day = 86_400;
    table(&[
        (
            "require \"vacation\"; vacation \"I am away\";",
            &[&format!("vacation period={} subject=- from=- reason=I am away", 7 * day), "implicit-keep"],
        ),
        (
            "require \"vacation\"; vacation :days 3 :subject \"Away\" :from \"me@example.org\" :addresses [\"a@x\"] \"r\";",
            &[&format!("vacation period={} subject=Away from=me@example.org reason=r", 3 * day), "implicit-keep"],
        ),
        (
            "require \"vacation\"; vacation :days 365 \"r\";",
            &[&format!("vacation period={} subject=- from=- reason=r", 60 * day), "implicit-keep"],
        ),
        (
            "require \"vacation-seconds\"; vacation :seconds 10 \"r\";",
            &[&format!("vacation period={day} subject=- from=- reason=r"), "implicit-keep"],
        ),
    ]);
    let settings = Settings {
        vacation_min_period: 0,
        ..Settings::default()
    };
    let o = run_full(
        "require \"vacation-seconds\"; vacation :seconds 10 :handle \"h\" :mime \"r\";",
        MESSAGE,
        &TestEnv::default(),
        &settings,
    )
    .unwrap();
    let Action::Vacation(v) = &o.actions[0] else {
        panic!()
    };
    assert_eq!((v.period, v.handle.as_str(), v.mime), (10, "h", true));
    // The default handle changes with the reply's text.
    let h = |s: &str| match &run(s).unwrap().actions[0] {
        Action::Vacation(v) => v.handle.clone(),
        _ => panic!(),
    };
    assert_ne!(
        h("require \"vacation\"; vacation \"a\";"),
        h("require \"vacation\"; vacation \"b\";")
    );
    assert!(run("require \"vacation\"; vacation \"a\"; vacation \"b\";").is_err());
}

#[test]
fn include_rfc6609() {
    let mut env = TestEnv::default();
    env.personal.insert(
        "spam".into(),
        "require \"fileinto\"; if header :contains \"subject\" \"acme\" { fileinto \"Acme\"; }"
            .into(),
    );
    env.personal.insert(
        "vars".into(),
        "require [\"include\", \"variables\"]; global \"folder\"; set \"folder\" \"FromInclude\"; set \"local\" \"x\";".into(),
    );
    env.personal.insert("stopper".into(), "stop;".into());
    env.personal.insert(
        "returner".into(),
        "require \"include\"; return; discard;".into(),
    );
    env.global.insert("spam".into(), "discard;".into());
    env.personal.insert(
        "once".into(),
        "require [\"include\", \"variables\"]; global \"n\"; set \"n\" \"${n}x\";".into(),
    );
    let s = Settings::default();
    let cases: &[(&str, &[&str])] = &[
        ("require \"include\"; include \"spam\";", &["fileinto Acme"]),
        ("require \"include\"; include :global \"spam\";", &["discard"]),
        ("require \"include\"; include :optional \"missing\"; keep;", &["keep"]),
        (
            "require [\"include\", \"variables\", \"fileinto\"]; global \"folder\"; include \"vars\"; fileinto \"${folder}${local}\";",
            &["fileinto FromInclude"],
        ),
        (
            "require [\"include\", \"variables\", \"fileinto\"]; include \"vars\"; fileinto \"${global.folder}|${folder}\";",
            &["fileinto FromInclude|"],
        ),
        ("require \"include\"; include \"stopper\"; discard;", &["implicit-keep"]),
        ("require \"include\"; include \"returner\"; keep;", &["keep"]),
        (
            "require [\"include\", \"variables\", \"fileinto\"]; global \"n\"; include :once \"once\"; include :once \"once\"; include \"once\"; fileinto \"${n}\";",
            &["fileinto xx"],
        ),
    ];
    for (script, want) in cases {
        let got = run_full(script, MESSAGE, &env, &s).unwrap_or_else(|e| panic!("{script}: {e}"));
        assert_eq!(summary(&got), *want, "{script}");
    }
    let e = run_full(
        "require \"include\"; include \"missing\";",
        MESSAGE,
        &env,
        &s,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    env.personal.insert("broken".into(), "if {".into());
    let e = run_full(
        "require \"include\"; include \"broken\";",
        MESSAGE,
        &env,
        &s,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not compile"), "{e}");
}

#[test]
fn duplicate_rfc7352() {
    let mut env = TestEnv::default();
    let s = Settings::default();
    let script = "require [\"duplicate\", \"fileinto\"]; if duplicate { fileinto \"Dups\"; }";
    let o = run_full(script, MESSAGE, &env, &s).unwrap();
    assert_eq!(summary(&o), KEEP);
    assert_eq!(o.duplicates.len(), 1);
    let (check, seen) = &o.duplicates[0];
    assert_eq!(
        (check.id.as_str(), check.period, *seen),
        ("<1234@example.net>", 12 * 3600, false)
    );
    env.seen.push("|<1234@example.net>".into());
    let o = run_full(script, MESSAGE, &env, &s).unwrap();
    assert_eq!(summary(&o), ["fileinto Dups"]);
    let o = run_full(
        "require [\"duplicate\", \"variables\"]; if duplicate :handle \"h\" :uniqueid \"${x}u\" :seconds 999999 :last { discard; }",
        MESSAGE,
        &env,
        &s,
    )
    .unwrap();
    let (check, _) = &o.duplicates[0];
    assert_eq!(
        (
            check.handle.as_str(),
            check.id.as_str(),
            check.period,
            check.last
        ),
        ("h", "u", 2 * 86_400, true)
    );
    // No such header: false, nothing recorded.
    let o = run_full(
        "require \"duplicate\"; if duplicate :header \"x-none\" { discard; }",
        MESSAGE,
        &env,
        &s,
    )
    .unwrap();
    assert!(o.duplicates.is_empty());
}

#[test]
fn editheader_rfc5293() {
    let s = Settings {
        editheader: true,
        ..Settings::default()
    };
    let script = "require [\"editheader\", \"fileinto\"];\
        addheader \"X-Sieve\" \"seen\";\
        addheader :last \"X-Tail\" \"t\";\
        deleteheader :index 1 \"x-spam-score\";\
        deleteheader :contains \"cc\" \"dave\";\
        deleteheader \"received\";\
        if allof (header :is \"x-sieve\" \"seen\", header :is \"x-spam-score\" \"12\", not exists \"cc\") { fileinto \"ok\"; }";
    let o = run_full(script, MESSAGE, &TestEnv::default(), &s).unwrap();
    assert_eq!(summary(&o), ["fileinto ok"]);
    assert_eq!(
        o.header_edits,
        vec![
            HeaderEdit::Add {
                name: "X-Sieve".into(),
                value: "seen".into(),
                last: false
            },
            HeaderEdit::Add {
                name: "X-Tail".into(),
                value: "t".into(),
                last: true
            },
            HeaderEdit::Delete {
                name: "x-spam-score".into(),
                occurrence: 1
            },
            HeaderEdit::Delete {
                name: "cc".into(),
                occurrence: 1
            },
        ]
    );
    // The fileinto came after the four edits.
    assert_eq!(o.edits_before, [4]);
    // RFC 5293 section 3: an action sees the edits made before it.
    let o = run_full(
        "require [\"editheader\", \"copy\"]; redirect :copy \"a@x.test\";\
         addheader \"X-A\" \"1\"; redirect \"b@x.test\"; deleteheader \"subject\";",
        MESSAGE,
        &TestEnv::default(),
        &s,
    )
    .unwrap();
    assert_eq!(o.actions.len(), 2, "{o:?}");
    assert_eq!(o.edits_before, [0, 1]);
    assert_eq!(o.header_edits.len(), 2);
    // Off by default.
    let e = compile("require \"editheader\";", &Settings::default()).unwrap_err();
    assert!(e.message.contains("not enabled"), "{e}");
    // Too long a field.
    let long = format!(
        "require \"editheader\"; addheader \"X\" \"{}\";",
        "a".repeat(3000)
    );
    assert!(run_full(&long, MESSAGE, &TestEnv::default(), &s).is_err());
}

#[test]
fn compile_errors_carry_line_and_column() {
    let s = Settings::default();
    let cases: &[(&str, usize, usize, &str)] = &[
        ("keep;\nfileinto \"x\";", 2, 1, "require \"fileinto\""),
        ("require \"nope\";", 1, 9, "unknown extension"),
        ("keep;\nrequire \"fileinto\";", 2, 1, "before every other"),
        ("if true {\n  frobnicate;\n}", 2, 3, "unknown command"),
        ("if header :bogus \"a\" \"b\" {}", 1, 11, "does not take"),
        ("if header :is :contains \"a\" \"b\" {}", 1, 15, "second match type"),
        ("redirect \"not an address\";", 1, 10, "not a valid address"),
        ("require \"regex\"; if header :regex \"s\" \"(\" {}", 1, 39, "invalid regular expression"),
        ("require \"relational\"; if header :value \"xx\" \"a\" \"b\" {}", 1, 33, "relational operator"),
        ("elsif true {}", 1, 1, "without a preceding"),
        ("if true { keep; }\nelse keep;", 2, 1, "else needs a block"),
        ("keep :flags \"x\";", 1, 6, "imap4flags"),
        ("require \"comparator-i;ascii-numeric\"; if header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" {}", 1, 42, "only with :is"),
        ("require \"date\"; if date \"date\" \"fortnight\" \"1\" {}", 1, 32, "unknown date part"),
        ("require \"variables\"; set \"1x\" \"v\";", 1, 26, "not a valid variable name"),
        ("discard", 1, 8, "expected ';'"),
        ("if true {", 1, 10, "expected a command or '}'"),
    ];
    let mut wrong = Vec::new();
    for (src, line, column, text) in cases {
        let e = compile(src, &s).expect_err(src);
        if !e.message.contains(text) || (e.line, e.column) != (*line, *column) {
            wrong.push(format!("{src}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let e = mailgate_sieve::compile_bytes(b"keep;\n  \"\xff\"", &s).unwrap_err();
    assert_eq!((e.line, e.column), (2, 4));
}

#[test]
fn capability_list() {
    let off = mailgate_sieve::extensions(&Settings::default());
    assert!(
        off.contains(&"fileinto")
            && off.contains(&"vacation-seconds")
            && !off.contains(&"editheader")
    );
    let on = mailgate_sieve::extensions(&Settings {
        editheader: true,
        ..Settings::default()
    });
    assert!(on.contains(&"editheader"));
}

/// The example of RFC 5228 section 9, names in mixed case as written there.
#[test]
fn rfc5228_section9_example() {
    let script = r#"
     require ["fileinto"];
     if header :is "Sender" "owner-ietf-mta-filters@imc.org"
             {
                 fileinto "filter";  # move to "filter" mailbox
             }
     elsif address :DOMAIN :is ["From", "To"] "example.com"
             {
                 keep;               # keep in "In" mailbox
             }
     elsif anyof (NOT address :all :contains
                    ["To", "Cc", "Bcc"] "me@example.com",
                  header :matches "subject"
                    ["*make*money*fast*", "*university*dipl*mas*"])
             {
                 fileinto "spam";   # move to "spam" mailbox
             }
     else
             {
                 # Move all other (non-company) mail to "personal"
                 # mailbox.
                 fileinto "personal";
             }
"#;
    let cases: &[(&str, &[&str])] = &[
        (
            "Sender: owner-ietf-mta-filters@imc.org\r\nTo: me@example.com\r\n\r\nx",
            &["fileinto filter"],
        ),
        (
            "From: boss@EXAMPLE.com\r\nTo: me@example.com\r\n\r\nx",
            &["keep"],
        ),
        (
            "From: a@b.org\r\nTo: other@b.org\r\n\r\nx",
            &["fileinto spam"],
        ),
        (
            "From: a@b.org\r\nCc: me@example.com\r\nSubject: MAKE MONEY FAST!\r\n\r\nx",
            &["fileinto spam"],
        ),
        (
            "From: a@b.org\r\nTo: x@b.org\r\nCc: Me <me@example.com>\r\nSubject: lunch\r\n\r\nx",
            &["fileinto personal"],
        ),
    ];
    for (msg, want) in cases {
        let got = run_full(script, msg, &TestEnv::default(), &Settings::default()).unwrap();
        assert_eq!(summary(&got), *want, "{msg}");
    }
}

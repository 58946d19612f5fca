//! Hostile scripts: each limit of `Settings` exceeded, contained with a
//! clear error, in a bounded time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailgate_sieve::{compile, RuntimeError, Settings};

fn quick<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    v
}

#[test]
fn script_size_limit() {
    let s = Settings::default();
    let big = format!("# {}\nkeep;", "x".repeat(s.max_script_size));
    let e = compile(&big, &s).unwrap_err();
    assert!(e.message.contains("more than the limit"), "{e}");
    let small = Settings {
        max_script_size: 10,
        ..Settings::default()
    };
    assert!(compile("keep; keep; keep;", &small).is_err());
    assert!(compile("keep;", &small).is_ok());
}

#[test]
fn deep_nesting_refused() {
    let s = Settings::default();
    let n = s.max_nesting + 1;
    let blocks = format!("{}{}", "if true {".repeat(n), "}".repeat(n));
    assert!(compile(&blocks, &s)
        .unwrap_err()
        .message
        .contains("nested deeper than 32"));
    let ok = format!(
        "{}{}",
        "if true {".repeat(s.max_nesting),
        "}".repeat(s.max_nesting)
    );
    assert!(compile(&ok, &s).is_ok());
    // A million `not`s or `anyof(`s do not overflow the stack.
    let nots = format!("if {} true {{}}", "not ".repeat(1_000_000));
    assert!(compile(&nots, &s).is_err());
    let anyofs = format!(
        "if {}true{} {{}}",
        "anyof(".repeat(200_000),
        ")".repeat(200_000)
    );
    assert!(compile(&anyofs, &s).is_err());
}

#[test]
fn action_limit() {
    let s = Settings::default();
    let many: String = (0..33).map(|i| format!("fileinto \"f{i}\";")).collect();
    let e = run(&format!("require \"fileinto\"; {many}")).unwrap_err();
    assert_eq!(e, RuntimeError::TooManyActions(s.max_actions));
    let fine: String = (0..32).map(|i| format!("fileinto \"f{i}\";")).collect();
    assert_eq!(
        run(&format!("require \"fileinto\"; {fine}"))
            .unwrap()
            .actions
            .len(),
        32
    );
}

#[test]
fn redirect_limit() {
    let five: String = (0..5)
        .map(|i| format!("redirect \"u{i}@example.com\";"))
        .collect();
    assert_eq!(run(&five).unwrap_err(), RuntimeError::TooManyRedirects(4));
    let four: String = (0..4)
        .map(|i| format!("redirect \"u{i}@example.com\";"))
        .collect();
    assert_eq!(run(&four).unwrap().actions.len(), 4);
    // A redirect address built from variables is checked when it runs.
    let e = run("require \"variables\"; set \"a\" \"x@y\r\nRCPT TO:<z@w>\"; redirect \"${a}\";")
        .unwrap_err();
    assert!(e.to_string().contains("not a valid address"), "{e}");
}

#[test]
fn include_loops_and_depth() {
    let mut env = TestEnv::default();
    env.personal
        .insert("a".into(), "require \"include\"; include \"b\";".into());
    env.personal
        .insert("b".into(), "require \"include\"; include \"a\";".into());
    env.personal.insert(
        "self".into(),
        "require \"include\"; include \"self\";".into(),
    );
    for i in 0..20 {
        env.personal.insert(
            format!("d{i}"),
            format!("require \"include\"; include \"d{}\";", i + 1),
        );
    }
    env.personal.insert("d20".into(), "keep;".into());
    let s = Settings::default();
    let e = run_full("require \"include\"; include \"a\";", MESSAGE, &env, &s).unwrap_err();
    assert!(matches!(e, RuntimeError::IncludeLoop(_)), "{e}");
    let e = run_full("require \"include\"; include \"self\";", MESSAGE, &env, &s).unwrap_err();
    assert!(matches!(e, RuntimeError::IncludeLoop(_)), "{e}");
    let e = run_full("require \"include\"; include \"d0\";", MESSAGE, &env, &s).unwrap_err();
    assert_eq!(e, RuntimeError::IncludeDepth(10));
    let e = run_full("require \"include\"; include \"d12\";", MESSAGE, &env, &s);
    assert_eq!(summary(&e.unwrap()), ["keep"], "8 levels are fine");
}

#[test]
fn include_fan_out_runs_out_of_fuel() {
    // Each level includes the next one 30 times (no :once): 30^9 runs
    // without the step budget.
    let mut env = TestEnv::default();
    for i in 0..9 {
        let body: String = (0..30)
            .map(|_| format!("include \"l{}\";", i + 1))
            .collect();
        env.personal
            .insert(format!("l{i}"), format!("require \"include\"; {body}"));
    }
    env.personal.insert(
        "l9".into(),
        "if header :contains \"subject\" \"x\" { keep; }".into(),
    );
    let s = Settings::default();
    let e =
        quick(|| run_full("require \"include\"; include \"l0\";", MESSAGE, &env, &s)).unwrap_err();
    assert_eq!(e, RuntimeError::FuelExhausted(s.max_cpu_steps));
}

#[test]
fn variable_doubling_runs_out_of_fuel_or_is_cut() {
    // Doubling a variable 64 times: the size cap keeps it at 4 KiB.
    let body: String = (0..64)
        .map(|_| "set \"a\" \"${a}${a}\";".to_string())
        .collect();
    let o = quick(|| run(&format!("require \"variables\"; set \"a\" \"x\"; {body}"))).unwrap();
    assert!(o.steps > 64);
    // Many long comparisons exhaust the budget.
    let s = Settings {
        max_cpu_steps: 5_000,
        ..Settings::default()
    };
    let tests: String = (0..2_000)
        .map(|i| format!("if header :contains \"subject\" \"nothing{i}\" {{ keep; }}"))
        .collect();
    let e = quick(|| run_full(&tests, MESSAGE, &TestEnv::default(), &s)).unwrap_err();
    assert_eq!(e, RuntimeError::FuelExhausted(5_000));
}

#[test]
fn hostile_regexes_are_bounded() {
    // Too large to compile: refused at compile time.
    let s = Settings::default();
    let e = compile(
        "require \"regex\"; if header :regex \"subject\" \"((a{1000}){1000}){1000}\" {}",
        &s,
    )
    .unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
    // The same built at run time through a variable: a runtime error.
    let e = run("require [\"regex\", \"variables\"]; set \"r\" \"(a{1000}){1000}\"; if header :regex \"subject\" \"${r}\" {}")
        .unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    // A classic catastrophic-backtracking pattern on a long value: linear.
    let msg = format!("Subject: {}!\r\n\r\nx", "a".repeat(50_000));
    let o = quick(|| {
        run_full(
            "require \"regex\"; if header :regex \"subject\" \"^(a+)+$\" { discard; }",
            &msg,
            &TestEnv::default(),
            &s,
        )
    })
    .unwrap();
    assert_eq!(summary(&o), ["implicit-keep"]);
    // Many wildcards against a long value.
    let o = quick(|| {
        run_full(
            "require \"variables\"; if header :matches \"subject\" \"*a*a*a*a*a*a*a*a*a*b\" { discard; }",
            &msg,
            &TestEnv::default(),
            &s,
        )
    });
    assert!(o.is_ok() || o == Err(RuntimeError::FuelExhausted(s.max_cpu_steps)));
}

#[test]
fn added_headers_and_duplicate_records_are_bounded() {
    let s = Settings {
        editheader: true,
        ..Settings::default()
    };
    let adds: String = (0..65)
        .map(|i| format!("addheader \"X-{i}\" \"v\";"))
        .collect();
    let e = run_full(
        &format!("require \"editheader\"; {adds}"),
        MESSAGE,
        &TestEnv::default(),
        &s,
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than 64 headers added"), "{e}");
    let adds: String = (0..64)
        .map(|i| format!("addheader \"X-{i}\" \"v\";"))
        .collect();
    let o = run_full(
        &format!("require \"editheader\"; {adds}"),
        MESSAGE,
        &TestEnv::default(),
        &s,
    )
    .unwrap();
    assert_eq!(o.header_edits.len(), 64);
    // The same duplicate question asked many times is recorded once.
    let dups = "if duplicate { keep; }".repeat(1000);
    let o = run(&format!("require \"duplicate\"; {dups}")).unwrap();
    assert_eq!(o.duplicates.len(), 1);
}

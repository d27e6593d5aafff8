//! Hand-written histories in `tests/data/histories`, each with the verdict per model and the
//! reason it is right; and the `detcd-check` binary's exit codes and outputs on them.

use std::path::PathBuf;
use std::process::Command;

use detcd_check::gen::{generate, jepsen_log, Anomaly, GenConfig, Workload};
use detcd_check::{linearizable, parse, Model, Options, Verdict};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/histories")
        .join(name)
}

/// (file, model, linearizable?, why).
const CASES: &[(&str, Model, bool, &str)] = &[
    (
        "register_ok.jsonl",
        Model::Register,
        true,
        "a read overlapping a put may see it; cas after the put",
    ),
    (
        "register_stale_read.jsonl",
        Model::Register,
        false,
        "the read starts after v2 was acknowledged",
    ),
    (
        "info_took_effect.jsonl",
        Model::Register,
        true,
        "an info put may take effect after a read saw nil",
    ),
    (
        "info_never.jsonl",
        Model::Register,
        true,
        "an info cas that cannot succeed may never happen",
    ),
    (
        "info_cannot_undo.jsonl",
        Model::Register,
        false,
        "once a read saw the info put, v1 cannot come back",
    ),
    (
        "kv_ok.jsonl",
        Model::Kv,
        true,
        "delete empties the key and resets the version",
    ),
    (
        "kv_wrong_version.jsonl",
        Model::Kv,
        false,
        "two puts make version 2",
    ),
    (
        "kv_wrong_version.jsonl",
        Model::Register,
        true,
        "the register model ignores versions",
    ),
    (
        "etcd_ok.jsonl",
        Model::Etcd,
        true,
        "revisions 2, 3, 4 in real-time order across keys",
    ),
    (
        "etcd_stale_revision.jsonl",
        Model::Etcd,
        false,
        "a read after revision 3 was acknowledged reports 2",
    ),
    (
        "etcd_stale_revision.jsonl",
        Model::Kv,
        true,
        "per key, the read of k1 is up to date",
    ),
    (
        "jepsen_ok.log",
        Model::Register,
        true,
        "nemesis and other loggers skipped; info cas took effect",
    ),
    (
        "jepsen_stale_read.log",
        Model::Register,
        false,
        "the read follows an acknowledged cas 1->2",
    ),
];

#[test]
fn hand_written_histories_get_the_right_verdict() {
    for (file, model, ok, why) in CASES {
        let h = parse(std::fs::File::open(path(file)).expect("test data exists"))
            .expect("test data parses");
        let v = linearizable(&h, *model, Options::default()).expect("operations fit the model");
        assert_eq!(
            v == Verdict::Linearizable,
            *ok,
            "{file} {model:?} ({why}): {v:?}"
        );
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_detcd-check"))
        .args(args)
        .output()
        .expect("the binary runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (
        out.status.code().expect("exited"),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn binary_exit_codes_follow_the_verdict() {
    for (file, model, ok, _) in CASES {
        let p = path(file);
        let (code, stdout, _) = run(&["--model", model.name(), p.to_str().expect("utf-8 path")]);
        let (want_code, word) = if *ok {
            (0, "linearizable (")
        } else {
            (1, "not linearizable (")
        };
        assert_eq!(code, want_code, "{file}: {stdout}");
        assert!(
            stdout.lines().last().is_some_and(|l| l.starts_with(word)),
            "{file}: {stdout}"
        );
    }
}

#[test]
fn unreadable_input_exits_2_naming_the_line() {
    let p = path("unreadable.jsonl");
    let (code, _, stderr) = run(&[p.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("line 3: process 1 completes with nothing in flight"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "--model",
        "register",
        path("kv_ok.jsonl").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 2, "the register model has no delete: {stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn failure_report_names_the_window_and_why_each_candidate_failed() {
    let p = path("info_cannot_undo.jsonl");
    let html = std::env::temp_dir().join(format!("detcd-check-{}.html", std::process::id()));
    let (code, stdout, _) = run(&[
        p.to_str().expect("utf-8 path"),
        "--html",
        html.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("window of 4 operations"), "{stdout}");
    assert!(
        stdout.contains("#3 next: read v1 but the key holds v2"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&html).expect("the page was written");
    std::fs::remove_file(&html).expect("remove the page");
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<svg"),
        "self-contained page"
    );
    assert!(
        page.contains(r##"fill="#e44""##),
        "the blocking operation is marked"
    );
    assert_eq!(
        page.matches(r##"stroke="#a00""##).count(),
        4,
        "the 4 window operations are outlined"
    );
}

#[test]
fn watch_streams_are_checked_against_the_history() {
    let arg = |name: &str| path(name).to_str().expect("utf-8 path").to_string();
    let history = arg("etcd_ok.jsonl");
    let ok = run(&[
        "--model",
        "etcd",
        &history,
        "--watch",
        &arg("watch_etcd_ok.jsonl"),
    ]);
    assert_eq!(ok.0, 0, "{}", ok.1);
    let (code, stdout, _) = run(&[
        "--model",
        "etcd",
        &history,
        "--watch",
        &arg("watch_etcd_gap.jsonl"),
    ]);
    assert_eq!(
        code, 1,
        "k1 at revision 3 was acknowledged but never delivered: {stdout}"
    );
    assert!(
        stdout.contains("line 2: watch 1 not reliable: k1 at revision 3"),
        "{stdout}"
    );
}

#[test]
fn an_info_write_that_was_read_is_explained_by_its_reader() {
    let p = path("info_read_but_impossible.jsonl");
    let (code, stdout, _) = run(&["--model", "register", p.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("had to take effect before #1 returned, as that read its value"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#0 next: expected x but the key holds nil"),
        "{stdout}"
    );
}

/// Writes `text` to a temporary file, runs the binary on it with `args` first, and removes it.
fn run_text(text: &str, name: &str, args: &[&str]) -> (i32, String, String) {
    let file = std::env::temp_dir().join(format!("detcd-check-{}-{name}", std::process::id()));
    std::fs::write(&file, text).expect("write the history");
    let mut all = args.to_vec();
    all.push(file.to_str().expect("utf-8 path"));
    let out = run(&all);
    std::fs::remove_file(&file).expect("remove the history");
    out
}

fn jsonl(cfg: &GenConfig) -> String {
    generate(cfg)
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes") + "\n")
        .collect()
}

#[test]
fn the_binary_finds_every_injected_anomaly_in_json_and_jepsen_form() {
    for anomaly in Anomaly::OR_NONE {
        let want = if anomaly.is_some() { 1 } else { 0 };
        let kv = GenConfig {
            anomaly,
            ..GenConfig::new(9, 2000, 10, Workload::Kv)
        };
        let (code, stdout, _) = run_text(&jsonl(&kv), "kv.jsonl", &[]);
        assert_eq!(code, want, "kv {anomaly:?}: {stdout}");
        let register = GenConfig {
            anomaly,
            ..GenConfig::new(9, 500, 1, Workload::Register)
        };
        let (code, stdout, _) = run_text(&jepsen_log(&generate(&register)), "r.log", &[]);
        assert_eq!(code, want, "jepsen {anomaly:?}: {stdout}");
    }
}

#[test]
fn the_time_limit_gives_unknown_and_exit_3() {
    let (code, stdout, _) = run_text(
        &jsonl(&GenConfig::new(5, 3000, 2, Workload::Kv)),
        "limit.jsonl",
        &["--time-limit", "0"],
    );
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("time limit reached after")
            && stdout.contains("operations, ")
            && stdout.contains("with unknown outcome); stuck on")
            && stdout.contains("\nunknown ("),
        "{stdout}"
    );
}

#[test]
fn the_page_is_well_formed() {
    let p = path("register_stale_read.jsonl");
    let h = parse(std::fs::File::open(&p).expect("test data exists")).expect("parses");
    let v = linearizable(&h, Model::Register, Options::default()).expect("register");
    let page = detcd_check::html::render(&h, &v, "a <title> & more");
    let svg = &page[page.find("<svg").expect("an svg")..page.find("</svg>").expect("closed") + 6];
    assert_eq!(
        svg.matches("<rect").count(),
        1 + h.ops.len(),
        "the window band and one box per operation"
    );
    assert!(
        page.contains("a &lt;title&gt; &amp; more"),
        "text is escaped"
    );
}

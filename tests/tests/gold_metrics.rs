//! Gold against the generator's ground truth (several seeds, sizes and formats), incremental
//! refreshes, tenant isolation and the notifications.

use metriccare_core::gold::read_gold;
use metriccare_core::ingest::FileResult;
use metriccare_tests::{EPSILON, TestLake, assert_matches_truth};

/// Generates a data set into the lake's raw zone and ingests every file, as the demo does.
async fn load_generated(
    lake: &TestLake,
    config: &fhir_generator::Config,
) -> fhir_generator::GroundTruth {
    let raw = lake.lake.dir.join("raw");
    let truth = fhir_generator::generate(config, &raw).unwrap().ground_truth;
    std::fs::remove_file(raw.join(fhir_generator::GROUND_TRUTH_FILE)).unwrap();
    for object in lake.lake.list_raw().await.unwrap() {
        let report = lake.lake.ingest_raw(&object.location).await.unwrap();
        assert_eq!(report.result, FileResult::Completed, "{report:?}");
    }
    truth
}

#[tokio::test]
async fn gold_reproduces_the_ground_truth_for_several_seeds_sizes_and_formats() {
    // (seed, patients, format, dirty, each tenant's clock in minutes east of UTC)
    let cases = [
        (1, 40, fhir_generator::Format::Ndjson, false, vec![]),
        (2, 120, fhir_generator::Format::Ndjson, true, vec![]),
        (3, 90, fhir_generator::Format::Bundle, true, vec![]),
        (4, 200, fhir_generator::Format::Bundle, false, vec![]),
        // Tenant profiles west and east of UTC: five hours behind, nine ahead
        (
            5,
            160,
            fhir_generator::Format::Ndjson,
            true,
            vec![-300, 540],
        ),
        (
            6,
            120,
            fhir_generator::Format::Bundle,
            false,
            vec![540, -300],
        ),
    ];
    for (seed, patients, format, dirty, clocks) in cases {
        let lake = TestLake::new();
        let config = fhir_generator::Config {
            patients,
            tenants: 2,
            seed,
            format,
            dirty,
            gzip: seed % 2 == 0,
            patients_per_bundle: 25,
            tenant_clocks: clocks,
        };
        let truth = load_generated(&lake, &config).await;
        for tenant in &truth.tenants {
            if tenant.utc_offset_minutes != 0 {
                // `Etc/GMT+5` is five hours west of UTC: the IANA sign is reversed.
                let hours = -tenant.utc_offset_minutes / 60;
                let zone = format!("Etc/GMT{hours:+}");
                write_profile(
                    &lake,
                    &tenant.tenant,
                    &format!(r#"{{"time_zone": "{zone}"}}"#),
                );
            }
        }
        let report = lake.lake.refresh_gold().await.unwrap();
        assert_eq!(report.refreshed.len(), 2);
        let gold = read_gold(&lake.lake.services.lake).await.unwrap();
        assert_matches_truth(
            &gold,
            &truth,
            &format!("seed {seed} {patients} {format:?} dirty={dirty}"),
        );
    }
}

fn notifications(lake: &TestLake) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lake.lake.dir.join("notifications.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &serde_json::Value| m["event"] == "gold.refreshed")
        .collect()
}

#[tokio::test]
async fn refreshes_are_incremental_per_tenant_and_quiet_when_nothing_changed() {
    // GIVEN two tenants loaded and refreshed once
    let lake = TestLake::new();
    let config = fhir_generator::Config {
        patients: 60,
        tenants: 2,
        seed: 9,
        ..fhir_generator::Config::default()
    };
    load_generated(&lake, &config).await;
    let first = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(first.refreshed.len(), 2);
    assert_eq!(notifications(&lake).len(), 2);
    let files_of = |tenant: &str| -> Vec<String> {
        let dir = lake
            .lake
            .dir
            .join("gold/hospital_monthly")
            .join(format!("tenant_id={tenant}"));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let tenant_02_files = files_of("tenant-02");

    // WHEN nothing changed: nothing is written and nobody is told
    let quiet = lake.lake.refresh_gold().await.unwrap();
    assert!(quiet.changed_tenants.is_empty() && quiet.gold_instants.is_empty());
    assert_eq!(notifications(&lake).len(), 2);

    // WHEN one tenant gets a new inpatient stay
    let stay = r#"{"resourceType":"Encounter","id":"new-stay","status":"finished","class":{"code":"IMP"},
        "subject":{"reference":"Patient/someone-new"},"period":{"start":"2025-06-01T10:00:00Z","end":"2025-06-04T10:00:00Z"},
        "serviceProvider":{"reference":"Organization/new-hospital","display":"New Hospital"}}"#
        .replace('\n', " ");
    lake.drop_raw("tenant-01/late/stay.ndjson", stay.as_bytes());
    let report = lake
        .lake
        .ingest_raw(&"tenant-01/late/stay.ndjson".into())
        .await
        .unwrap();
    assert_eq!(report.result, FileResult::Completed);
    let second = lake.lake.refresh_gold().await.unwrap();

    // THEN only that tenant is recomputed, rewritten and announced; the other's files are untouched
    assert_eq!(second.changed_tenants, vec!["tenant-01".to_owned()]);
    assert_eq!(second.refreshed.len(), 1);
    assert_eq!(files_of("tenant-02"), tenant_02_files);
    let messages = notifications(&lake);
    assert_eq!(messages.len(), 3);
    let last = &messages[2];
    assert_eq!(last["tenant_id"], "tenant-01");
    assert_eq!(last["data"]["change"]["stays"], 1);
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let new = gold["tenant-01"]
        .hospital_monthly
        .iter()
        .find(|r| r.hospital_name == "New Hospital")
        .unwrap();
    assert_eq!(
        (new.month.as_str(), new.stays, new.patient_days),
        ("2025-06", 1, 3)
    );
    // A silver change that leaves the metrics as they were writes nothing and tells nobody.
    lake.drop_raw("tenant-02/late/ambulatory.ndjson", br#"{"resourceType":"Encounter","id":"amb-1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/x"}}"#);
    lake.lake
        .ingest_raw(&"tenant-02/late/ambulatory.ndjson".into())
        .await
        .unwrap();
    let third = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(third.changed_tenants, vec!["tenant-02".to_owned()]);
    assert!(third.refreshed.is_empty() && third.gold_instants.is_empty());
    assert_eq!(notifications(&lake).len(), 3);
}

#[tokio::test]
async fn a_tenant_whose_stays_all_disappear_has_its_gold_emptied() {
    let lake = TestLake::new();
    let stay = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"IMP"},"subject":{"reference":"Patient/p"},"period":{"start":"2025-01-01T10:00:00Z","end":"2025-01-02T10:00:00Z"}}}]}"#;
    lake.drop_raw("t1/a.json", stay.as_bytes());
    lake.lake.ingest_raw(&"t1/a.json".into()).await.unwrap();
    lake.lake.refresh_gold().await.unwrap();
    assert_eq!(
        read_gold(&lake.lake.services.lake).await.unwrap()["t1"]
            .hospital_monthly
            .len(),
        1
    );
    let delete = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Encounter/e1"}}]}"#;
    lake.drop_raw("t1/b.json", delete.as_bytes());
    lake.lake.ingest_raw(&"t1/b.json".into()).await.unwrap();
    let report = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(report.refreshed.len(), 1);
    assert!(
        !read_gold(&lake.lake.services.lake)
            .await
            .unwrap()
            .contains_key("t1")
    );
}

#[tokio::test]
async fn infections_and_index_stays_follow_the_v2_rules_worked_out_by_hand() {
    // GIVEN tests/fixtures/edge-cases/measures-v2.ndjson, all at Alpha General in September 2024:
    // - p-ama: a stay 1-12 September discharged against medical advice (HL7 `aadvice`), back 20-25
    //   September. In the first stay: a refuted sepsis and an entered-in-error pneumonia on day 4,
    //   a confirmed sepsis on 5 September (day 5), the same sepsis again on 10 September (its
    //   onsetPeriod; day 6 of the 14-day repeat window), a UTI coded first with a local code and
    //   then in ICD-10-CM on 6 September, a surgical site infection dated only by its onsetPeriod
    //   (7 September). In the second stay: a sepsis on 22 September (day 3 of the stay, 17 days
    //   after the counted one).
    // - p-exp: a stay 1-5 September discharged as expired (NUBC 20; the patient has no death
    //   date), back 10-12 September.
    let lake = TestLake::new();
    let report = lake
        .ingest(
            &metriccare_tests::fixtures().join("edge-cases/measures-v2.ndjson"),
            "t1",
        )
        .await;
    assert_eq!(
        (report.result, report.outcome.rejected),
        (FileResult::Completed, 0)
    );
    // WHEN gold is refreshed
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let rows = &gold["t1"];
    metriccare_tests::assert_gold_sums_over_stay_detail(rows, "measures-v2.ndjson");
    assert_eq!(
        rows.hospital_monthly.len(),
        1,
        "{:?}",
        rows.hospital_monthly
    );
    let september = &rows.hospital_monthly[0];
    // THEN four stays; two index stays (the returns: the first stays ended against advice and
    // in death), so no readmission; 11 + 5 + 4 + 2 patient days
    assert_eq!(
        (
            september.stays,
            september.index_stays,
            september.readmissions_30d,
            september.patient_days
        ),
        (4, 2, 0, 22)
    );
    // AND four infections on two stays: the first sepsis, the UTI (by its second coding), the
    // surgical site infection (by its onsetPeriod) and the sepsis of the second stay; not the
    // refuted, the entered-in-error or the repeat
    assert_eq!((september.hai_count, september.hai_stays), (4, 2));
    let by_code: Vec<(&str, &str, i64)> = rows
        .hai_by_code
        .iter()
        .map(|r| (r.system.as_str(), r.code.as_str(), r.count))
        .collect();
    assert_eq!(
        by_code,
        [
            ("http://hl7.org/fhir/sid/icd-10-cm", "N39.0", 1),
            ("http://snomed.info/sct", "433202001", 1),
            ("http://snomed.info/sct", "91302008", 2)
        ]
    );
}

#[tokio::test]
async fn stay_detail_shows_the_episode_the_readmission_and_the_windows_still_open() {
    // GIVEN, relative to today (UTC, at noon): a stay at org-a from day -40 to -36, a transfer to
    // org-b the same day until day -33, and a return to org-a on days -20 to -15
    const DAY: i64 = 86_400_000_000;
    let now = metriccare_core::time::now_micros();
    let at =
        |day: i64| metriccare_core::time::rfc3339(now - now.rem_euclid(DAY) + day * DAY + DAY / 2);
    let stay = |id: &str, org: &str, start: i64, end: i64| {
        format!(
            r#"{{"resourceType":"Encounter","id":"{id}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"}},"subject":{{"reference":"Patient/p"}},"serviceProvider":{{"reference":"Organization/{org}"}},"period":{{"start":"{}","end":"{}"}}}}"#,
            at(start),
            at(end)
        )
    };
    let lines = [
        r#"{"resourceType":"Patient","id":"p","gender":"female"}"#.to_owned(),
        stay("a", "org-a", -40, -36),
        stay("b", "org-b", -36, -33),
        stay("c", "org-a", -20, -15),
    ];
    let lake = TestLake::new();
    let file = lake.write_input("recent.ndjson", lines.join("\n").as_bytes());
    lake.ingest(&file, "t1").await;
    // WHEN gold is refreshed
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let rows = &gold["t1"];
    metriccare_tests::assert_gold_sums_over_stay_detail(rows, "recent stays");
    let key = |id: &str| metriccare_tests::pseudonym("t1", "Encounter", id);
    let detail = |id: &str| {
        rows.stay_detail
            .iter()
            .find(|d| d.stay_key == key(id))
            .unwrap()
    };
    // THEN a and b are one episode: its mortality on a (window ended on day -10), its readmission
    // on b, by c (window ended on day -3)
    let (a, b, c) = (detail("a"), detail("b"), detail("c"));
    assert_eq!(
        (a.episode_key.as_str(), b.episode_key.as_str()),
        (key("a").as_str(), key("a").as_str())
    );
    assert_eq!(
        (a.died_30d, a.mortality_window_open, a.index_episode),
        (Some(false), Some(false), None)
    );
    assert_eq!(
        (b.died_30d, b.index_episode, b.readmitted),
        (None, Some(true), Some(true))
    );
    assert_eq!(b.readmission_stay_key, Some(key("c")));
    assert_eq!(b.readmission_window_open, Some(false));
    // AND c is an episode of its own whose windows are both still open
    assert_eq!(c.episode_key, key("c"));
    assert_eq!(
        (
            c.mortality_window_open,
            c.readmitted,
            c.readmission_window_open
        ),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!((c.los, c.discharge_date - c.admission_date), (5, 5));
}

#[tokio::test]
async fn a_transfer_chain_across_three_hospitals_is_one_episode_worked_out_by_hand() {
    // GIVEN tests/fixtures/edge-cases/transfers.ndjson, October 2024: p-chain moved from Alpha to
    // Beta on the day of discharge, on to Gamma the next day, back at Alpha 13 days later;
    // p-dies moved from Alpha to Beta the same day and died 10 days after the second discharge
    let lake = TestLake::new();
    let report = lake
        .ingest(
            &metriccare_tests::fixtures().join("edge-cases/transfers.ndjson"),
            "t1",
        )
        .await;
    assert_eq!(
        (report.result, report.outcome.rejected),
        (FileResult::Completed, 0)
    );
    // WHEN gold is refreshed
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let rows = &gold["t1"];
    metriccare_tests::assert_gold_sums_over_stay_detail(rows, "transfers.ndjson");
    // THEN per hospital [stays, mortality episodes, deaths, index episodes, readmissions]:
    // Alpha holds three stays and the three episodes' mortality (one death: p-dies, within 30 days
    // of the first admission, once); Gamma the chain's readmission (by the return); Beta the
    // p-dies episode's index (alive at its last discharge). Without episodes it would have been
    // four readmissions and two deaths.
    let got: Vec<(&str, [i64; 5])> = rows
        .hospital_monthly
        .iter()
        .map(|r| {
            (
                r.hospital_name.as_str(),
                [
                    r.stays,
                    r.mortality_episodes,
                    r.deaths_30d,
                    r.index_stays,
                    r.readmissions_30d,
                ],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Alpha General", [3, 3, 1, 1, 0]),
            ("Beta Memorial", [2, 0, 0, 1, 0]),
            ("Gamma Regional", [1, 0, 0, 1, 1]),
        ]
    );
    assert_eq!(
        (
            rows.mortality_yearly[0].episodes,
            rows.mortality_yearly[0].deaths
        ),
        (3, 1)
    );
}

#[tokio::test]
async fn hand_written_edge_cases_give_the_numbers_worked_out_by_hand() {
    // GIVEN tests/fixtures/edge-cases: deaths on day +30 (through a time zone) and +31, a
    // deceasedBoolean without date, a death during the stay, a readmission chain across two
    // hospitals, an open stay, an ambulatory visit, HAIs present on admission / in the window /
    // recorded only / after discharge, a stay across a month boundary, a discharge whose UTC date is
    // the next month.
    let lake = TestLake::new();
    let report = lake
        .ingest(
            &metriccare_tests::fixtures().join("edge-cases/edge-cases.ndjson"),
            "t1",
        )
        .await;
    assert_eq!(
        (report.result, report.outcome.rejected),
        (FileResult::Completed, 0)
    );
    // WHEN gold is refreshed
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let rows = &gold["t1"];
    metriccare_tests::assert_gold_sums_over_stay_detail(rows, "edge-cases.ndjson");
    // THEN (hospital, month) → [stays, deaths_30d, index, readmissions, patient days, HAIs, HAI stays]
    let got: Vec<(String, String, [i64; 7])> = rows
        .hospital_monthly
        .iter()
        .map(|r| {
            let counts = [
                r.stays,
                r.deaths_30d,
                r.index_stays,
                r.readmissions_30d,
                r.patient_days,
                r.hai_count,
                r.hai_stays,
            ];
            (r.hospital_name.clone(), r.month.clone(), counts)
        })
        .collect();
    let row = |h: &str, m: &str, c: [i64; 7]| (h.to_owned(), m.to_owned(), c);
    assert_eq!(
        got,
        vec![
            // March: dies30 (LOS 4, death on day +30 in UTC), dies31 (4), bool (2), instay (2, dead at
            // discharge: not index), chain1 (2, readmitted on day +30).
            row("Alpha General", "2024-03", [5, 2, 4, 1, 14, 0, 0]),
            // chain2, readmitted by chain3 ten days later at the other hospital.
            row("Alpha General", "2024-04", [1, 0, 1, 1, 2, 0, 0]),
            // The HAI stay: 9 days; pneumonia on day +2 and the UTI recorded on the discharge day.
            row("Alpha General", "2024-05", [1, 0, 1, 0, 9, 2, 1]),
            // Admitted in May, discharged in June.
            row("Alpha General", "2024-06", [1, 0, 1, 0, 3, 0, 0]),
            // Discharged 30 June 22:30 at -04:00, which is 1 July in UTC.
            row("Alpha General", "2024-07", [1, 0, 1, 0, 3, 0, 0]),
            row("Beta Memorial", "2024-04", [1, 0, 1, 0, 1, 0, 0]),
        ]
    );
    let march = &rows.hospital_monthly[0];
    assert_eq!(
        (march.mortality_rate, march.readmission_rate, march.alos),
        (0.4, 0.25, 2.8)
    );
    let may = &rows.hospital_monthly[2];
    assert!((may.hai_per_1000_patient_days - 2000.0 / 9.0).abs() < EPSILON);
    let hai: Vec<(&str, &str, i64)> = rows
        .hai_by_code
        .iter()
        .map(|r| (r.month.as_str(), r.code.as_str(), r.count))
        .collect();
    assert_eq!(
        hai,
        vec![("2024-05", "233604007", 1), ("2024-05", "68566005", 1)]
    );
    let yearly: Vec<(i32, i64, i64)> = rows
        .mortality_yearly
        .iter()
        .map(|r| (r.year, r.episodes, r.deaths))
        .collect();
    assert_eq!(yearly, vec![(2024, 10, 2)]);
}

#[tokio::test]
async fn one_refresh_at_a_time_and_a_stopped_refresh_is_announced_by_the_next() {
    let lake = TestLake::new();
    lake.drop_raw(
        "t1/stay.json",
        &metriccare_tests::read_fixture("edge-cases/edge-cases.ndjson"),
    );
    lake.lake.ingest_raw(&"t1/stay.json".into()).await.unwrap();
    let lock = lake.lake.dir.join("_metriccare/gold/refresh.lock");
    let far_future = metriccare_core::time::now_micros() + 3_600_000_000;

    // A refresh holding the lock: another one does nothing.
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, format!(r#"{{"expires_at":{far_future}}}"#)).unwrap();
    let busy = lake.lake.refresh_gold().await.unwrap();
    assert!(busy.busy && busy.refreshed.is_empty());
    assert!(
        read_gold(&lake.lake.services.lake)
            .await
            .unwrap()
            .is_empty()
    );

    // Its holder died: once the lease expired the lock is taken over, and released after.
    std::fs::write(&lock, r#"{"expires_at":1}"#).unwrap();
    let report = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(report.refreshed.len(), 1);
    assert!(!lock.exists());
    assert_eq!(notifications(&lake).len(), 1);

    // A refresh that committed gold for t1 but stopped before announcing it (its state says so):
    // the next refresh announces t1 even though nothing changed since.
    let state_path = lake.lake.dir.join("_metriccare/gold/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["unannounced"] = serde_json::json!(["t1"]);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let quiet = lake.lake.refresh_gold().await.unwrap();
    assert!(quiet.refreshed.is_empty());
    let messages = notifications(&lake);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["data"]["headline"]["stays"], 10);

    // A tenant whose silver changed without any stay gets no gold and no message.
    lake.drop_raw(
        "t2/patients.ndjson",
        br#"{"resourceType":"Patient","id":"only-a-patient"}"#,
    );
    lake.lake
        .ingest_raw(&"t2/patients.ndjson".into())
        .await
        .unwrap();
    let no_stays = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(no_stays.changed_tenants, vec!["t2".to_owned()]);
    assert!(no_stays.refreshed.is_empty() && no_stays.gold_instants.is_empty());
    assert_eq!(notifications(&lake).len(), 2);
}

/// One stay of patient p1 at hospital h1, discharged at 23:30 in New York on 31 January (1
/// February in UTC), coded with a local inpatient class.
const LOCAL_CLASS_STAY: &[u8] = br#"{"resourceType":"Patient","id":"p1","gender":"female"}
{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://hospital.example/fhir/class","code":"INPT"},"subject":{"reference":"Patient/p1"},"serviceProvider":{"reference":"Organization/h1"},"period":{"start":"2024-01-29T10:00:00-05:00","end":"2024-01-31T23:30:00-05:00"}}
"#;

fn write_profile(lake: &TestLake, tenant: &str, text: &str) {
    let dir = lake.path().join("config/tenants");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{tenant}.json")), text).unwrap();
}

/// (month, stays) of a tenant's gold.
async fn months(lake: &TestLake, tenant: &str) -> Vec<(String, i64)> {
    read_gold(&lake.lake.services.lake)
        .await
        .unwrap()
        .get(tenant)
        .map(|rows| {
            rows.hospital_monthly
                .iter()
                .map(|r| (r.month.clone(), r.stays))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_tenant_profile_is_read_and_a_changed_or_refused_one_recomputes_or_keeps_its_gold() {
    // GIVEN a tenant whose only stay has a local class, and another tenant
    let lake = TestLake::new();
    let file = lake.write_input("stay.ndjson", LOCAL_CLASS_STAY);
    lake.ingest(&file, "t1").await;
    lake.ingest(&file, "t2").await;
    lake.lake.refresh_gold().await.unwrap();
    // THEN without a profile the local class is no stay
    assert_eq!(months(&lake, "t1").await, []);

    // WHEN t1 gets a profile naming its class, on New York's clock (no silver change)
    let profile = r#"{"time_zone": "America/New_York",
        "inpatient_classes": [{"system": "http://hospital.example/fhir/class", "code": "INPT"}]}"#;
    write_profile(&lake, "t1", profile);
    let report = lake.lake.refresh_gold().await.unwrap();
    // THEN t1 alone is recomputed: one stay, in January (its local discharge date)
    assert_eq!(report.changed_tenants, ["t1"]);
    assert_eq!(months(&lake, "t1").await, [("2024-01".to_owned(), 1)]);
    assert_eq!(months(&lake, "t2").await, []);
    // AND the same profile again changes nothing
    let quiet = lake.lake.refresh_gold().await.unwrap();
    assert!(quiet.changed_tenants.is_empty(), "{quiet:?}");

    // WHEN the profile is broken
    write_profile(&lake, "t1", r#"{"time_zone": "Mars/Olympus"}"#);
    let refused = lake.lake.refresh_gold().await.unwrap();
    // THEN it is refused naming the key, and t1's gold is left as it was
    assert!(
        refused.profile_errors["t1"].contains("time_zone"),
        "{refused:?}"
    );
    assert!(refused.changed_tenants.is_empty());
    assert_eq!(months(&lake, "t1").await, [("2024-01".to_owned(), 1)]);

    // WHEN it is fixed to Tokyo's clock, then removed
    write_profile(
        &lake,
        "t1",
        &profile.replace("America/New_York", "Asia/Tokyo"),
    );
    lake.lake.refresh_gold().await.unwrap();
    // THEN the stay moves to February (1 February in Tokyo)
    assert_eq!(months(&lake, "t1").await, [("2024-02".to_owned(), 1)]);
    std::fs::remove_file(lake.path().join("config/tenants/t1.json")).unwrap();
    let removed = lake.lake.refresh_gold().await.unwrap();
    // AND without it t1 is recomputed with the defaults again
    assert_eq!(removed.changed_tenants, ["t1"]);
    assert_eq!(months(&lake, "t1").await, []);
}

#[tokio::test]
async fn new_measure_definitions_recompute_every_tenant_and_empty_one_whose_profile_is_refused() {
    // GIVEN two tenants with gold, t1's profile refused since
    let lake = TestLake::new();
    let file = lake.write_input("stays.ndjson", LOCAL_CLASS_STAY);
    let profile = r#"{"inpatient_classes": [{"system": "http://hospital.example/fhir/class", "code": "INPT"}]}"#;
    write_profile(&lake, "t1", profile);
    write_profile(&lake, "t2", profile);
    lake.ingest(&file, "t1").await;
    lake.ingest(&file, "t2").await;
    lake.lake.refresh_gold().await.unwrap();
    assert_eq!(months(&lake, "t1").await.len(), 1);
    write_profile(&lake, "t1", r#"{"time_zone": "Mars/Olympus"}"#);
    lake.lake.refresh_gold().await.unwrap();
    assert_eq!(months(&lake, "t1").await.len(), 1, "left as it was");
    // WHEN the gold was computed by another release (its state names other definitions)
    let state_path = lake.lake.dir.join("_metriccare/gold/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["definitions"] = serde_json::json!("measures-1:older");
    std::fs::write(&state_path, state.to_string()).unwrap();
    let report = lake.lake.refresh_gold().await.unwrap();
    // THEN t2 is recomputed and announced (with no "previous" figures: they are not comparable),
    // and t1's gold is emptied while its profile is refused
    assert_eq!(report.changed_tenants, ["t1", "t2"]);
    let t2 = report
        .refreshed
        .iter()
        .find(|t| t.tenant_id == "t2")
        .unwrap();
    assert_eq!(t2.previous, None);
    assert_eq!(months(&lake, "t1").await, []);
    assert_eq!(months(&lake, "t2").await.len(), 1);
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    assert!(
        gold["t2"]
            .hospital_monthly
            .iter()
            .all(|r| r.measure_version == metriccare_core::gold::metrics::MEASURE_VERSION)
    );
    // AND once the profile is fixed, t1 is recomputed
    write_profile(&lake, "t1", profile);
    lake.lake.refresh_gold().await.unwrap();
    assert_eq!(months(&lake, "t1").await.len(), 1);
}

#[tokio::test]
async fn silver_that_arrives_while_a_profile_is_refused_is_folded_in_once_it_is_removed() {
    // GIVEN two tenants with gold, t1 without a profile
    let lake = TestLake::new();
    let stay = |id: &str, start: &str, end: &str| {
        format!(
            r#"{{"resourceType":"Encounter","id":"{id}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"}},"subject":{{"reference":"Patient/p1"}},"period":{{"start":"{start}","end":"{end}"}}}}"#
        )
    };
    let first = lake.write_input(
        "first.ndjson",
        stay("e1", "2024-01-02T10:00:00Z", "2024-01-05T10:00:00Z").as_bytes(),
    );
    lake.ingest(&first, "t1").await;
    lake.ingest(&first, "t2").await;
    lake.lake.refresh_gold().await.unwrap();
    // WHEN t1 gets a profile that is refused, and a second stay arrives for t1 and one for t2
    write_profile(&lake, "t1", r#"{"time_zone": "Nowhere/Special"}"#);
    let second = lake.write_input(
        "second.ndjson",
        stay("e2", "2024-02-02T10:00:00Z", "2024-02-05T10:00:00Z").as_bytes(),
    );
    lake.ingest(&second, "t1").await;
    lake.ingest(&second, "t2").await;
    let refused = lake.lake.refresh_gold().await.unwrap();
    // THEN t2 is refreshed, t1 left as it was, and the refusal is said again on every refresh
    assert_eq!(refused.changed_tenants, ["t2"]);
    assert_eq!(months(&lake, "t1").await, [("2024-01".to_owned(), 1)]);
    let again = lake.lake.refresh_gold().await.unwrap();
    assert!(again.profile_errors.contains_key("t1"), "{again:?}");
    assert!(again.changed_tenants.is_empty());
    // WHEN the profile is removed
    std::fs::remove_file(lake.path().join("config/tenants/t1.json")).unwrap();
    let removed = lake.lake.refresh_gold().await.unwrap();
    // THEN t1 is recomputed with the stay that arrived meanwhile
    assert_eq!(removed.changed_tenants, ["t1"]);
    assert_eq!(
        months(&lake, "t1").await,
        [("2024-01".to_owned(), 1), ("2024-02".to_owned(), 1)]
    );
}

//! The `gold.refreshed` message: JSON for machine subscribers, a readable body for e-mail.
//!
//! E-mail leaves the analytics boundary: no count from 1 to 10 may be shown or derived from one
//! e-mail (by subtraction, from a rate and its base) or from two consecutive e-mails of a tenant
//! (the CMS cell-size rule, complementary cells included). The body therefore shows **no counts at
//! all** — a count, or the difference between two e-mails' counts, is exactly what the rule forbids
//! — and a rate only when every count it is built on is 0 or at least 11: its numerator, its
//! denominator and, for a proportion, their difference (the complementary cell: 15 episodes at
//! 80 % mortality are 3 survivors). Without a shown base no rate can be turned back into a count,
//! in one e-mail or across two. The JSON data, with every number, goes to machine subscribers inside
//! the boundary (the topic is encrypted with the deployment's key and keeps SNS's default policy:
//! only the owning account subscribes; docs/metrics.md, "Refresh").

use serde_json::json;

use super::metrics::Headline;
use super::{RefreshReport, TenantRefresh};
use crate::ports::{Message, Topic};

/// Whether a count may stand behind a figure that leaves the boundary: 0, or 11 and more.
fn publishable(count: i64) -> bool {
    !(1..=10).contains(&count)
}

/// A headline rate: its value and the counts it is built on.
struct Rate {
    label: &'static str,
    value: f64,
    numerator: i64,
    denominator: i64,
    /// A proportion (deaths of episodes): the denominator minus the numerator is a count too.
    proportion: bool,
    percent: bool,
}

impl Rate {
    /// The counts an e-mail reader could learn from the rate if it were shown with any base.
    fn counts(&self) -> Vec<i64> {
        let mut counts = vec![self.numerator, self.denominator];
        if self.proportion {
            counts.push(self.denominator - self.numerator);
        }
        counts
    }

    /// The rate as the e-mail shows it. Not shown when a count it rests on is from 1 to 10, nor
    /// when one of them moved by 1 to 10 since the previous refresh: two rates one decimal apart
    /// over small bases can be solved for the change (47.8 % → 52.2 % is 11/23 → 12/23).
    fn shown(&self, previous: Option<&Rate>) -> String {
        let moved_little = previous.is_some_and(|p| {
            self.counts()
                .into_iter()
                .zip(p.counts())
                .any(|(now, before)| !publishable((now - before).abs()))
        });
        if !self.counts().into_iter().all(publishable) {
            "not shown (it rests on a count from 1 to 10)".to_owned()
        } else if moved_little {
            "not shown (a count it rests on changed by 1 to 10 since the last e-mail)".to_owned()
        } else if self.percent {
            format!("{:.1}%", self.value * 100.0)
        } else {
            format!("{:.1}", self.value)
        }
    }
}

fn rates(headline: &Headline) -> [Rate; 4] {
    let (h, t) = (headline, &headline.totals);
    [
        Rate {
            label: "30-day mortality (crude)",
            value: h.mortality_rate,
            numerator: t.deaths_30d,
            denominator: t.mortality_episodes,
            proportion: true,
            percent: true,
        },
        Rate {
            label: "30-day readmission (crude)",
            value: h.readmission_rate,
            numerator: t.readmissions_30d,
            denominator: t.index_stays,
            proportion: true,
            percent: true,
        },
        Rate {
            label: "Average length of stay (days)",
            value: h.alos,
            numerator: t.patient_days,
            denominator: t.stays,
            proportion: false,
            percent: false,
        },
        Rate {
            label: "Hospital-acquired infections per 1,000 patient days",
            value: h.hai_per_1000_patient_days,
            numerator: t.hai_count,
            denominator: t.patient_days,
            proportion: false,
            percent: false,
        },
    ]
}

fn body(
    tenant: &str,
    headline: &Headline,
    previous: Option<&Headline>,
    gold_instants: &[String],
) -> String {
    let mut text = format!("MetricCare refreshed the quality metrics of {tenant}.\n\n");
    let before = previous.map(rates);
    for (i, rate) in rates(headline).iter().enumerate() {
        let shown = rate.shown(before.as_ref().map(|b| &b[i]));
        text.push_str(&format!("{}: {shown}\n", rate.label));
    }
    let t = &headline.totals;
    if t.open_window_index > 0 || t.open_window_mortality > 0 {
        text.push_str(
            "Some 30-day windows of the newest months have not ended: their rates can still rise.\n",
        );
    }
    text.push_str(&format!(
        "\nNo counts are shown, and a rate only when every count it rests on is 0 or at least 11 and \
         none moved by 1 to 10 since the last e-mail (CMS cell-size rule). The exact figures, and the change against the previous refresh, are \
         in the message's data for analytics subscribers and in the gold tables.\n\
         Gold commits: {}\n",
        gold_instants.join(", ")
    ));
    text
}

/// The message for one refreshed tenant.
pub fn message_for(tenant: &TenantRefresh, report: &RefreshReport) -> Message {
    let h = &tenant.headline;
    let change = tenant.previous.map(|p| {
        json!({
            "stays": h.totals.stays - p.totals.stays,
            "mortality_rate": h.mortality_rate - p.mortality_rate,
            "readmission_rate": h.readmission_rate - p.readmission_rate,
            "alos": h.alos - p.alos,
            "hai_per_1000_patient_days": h.hai_per_1000_patient_days - p.hai_per_1000_patient_days,
        })
    });
    Message {
        topic: Topic::Notifications,
        event: "gold.refreshed".to_owned(),
        tenant_id: Some(tenant.tenant_id.clone()),
        subject: format!(
            "MetricCare: quality metrics refreshed for {}",
            tenant.tenant_id
        ),
        text: body(
            &tenant.tenant_id,
            h,
            tenant.previous.as_ref(),
            &report.gold_instants,
        ),
        data: json!({
            "event": "gold.refreshed",
            "tenant_id": tenant.tenant_id,
            "silver_sequences": report.silver_sequences,
            "gold_instants": report.gold_instants,
            "rows": tenant.rows,
            "headline": h,
            "previous": tenant.previous,
            "change": change,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gold::metrics::Totals;

    fn headline(t: Totals) -> Headline {
        let ratio = |n: i64, d: i64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        Headline {
            mortality_rate: ratio(t.deaths_30d, t.mortality_episodes),
            readmission_rate: ratio(t.readmissions_30d, t.index_stays),
            alos: ratio(t.patient_days, t.stays),
            hai_per_1000_patient_days: ratio(t.hai_count * 1000, t.patient_days),
            totals: t,
        }
    }

    #[test]
    fn a_rate_resting_on_a_small_count_or_its_complement_is_not_shown() {
        // GIVEN 15 episodes with 12 deaths (3 survivors), 190 index episodes with 30 readmissions
        let h = headline(Totals {
            stays: 200,
            deaths_30d: 12,
            mortality_episodes: 15,
            index_stays: 190,
            readmissions_30d: 30,
            patient_days: 900,
            hai_count: 4,
            hai_stays: 4,
            open_window_index: 12,
            open_window_mortality: 0,
        });
        let text = body("t1", &h, None, &[]);
        // THEN mortality is not shown (3 survivors), readmission is; no count is shown
        assert!(
            text.contains("30-day mortality (crude): not shown"),
            "{text}"
        );
        assert!(text.contains("30-day readmission (crude): 15.8%"), "{text}");
        assert!(text.contains("patient days: not shown"), "{text}");
        assert!(
            text.contains("Average length of stay (days): 4.5"),
            "{text}"
        );
        assert!(text.contains("can still rise"), "{text}");
        assert!(!text.contains("200") && !text.contains("190"), "{text}");
    }

    #[test]
    fn a_rate_whose_counts_moved_by_a_few_since_the_last_e_mail_is_not_shown() {
        let before = Totals {
            stays: 60,
            deaths_30d: 11,
            mortality_episodes: 23,
            index_stays: 40,
            readmissions_30d: 12,
            patient_days: 300,
            hai_count: 0,
            hai_stays: 0,
            open_window_index: 0,
            open_window_mortality: 0,
        };
        // One more death: 47.8 % → 52.2 % would give it away
        let after = Totals {
            deaths_30d: 12,
            ..before
        };
        let text = body("t1", &headline(after), Some(&headline(before)), &[]);
        assert!(
            text.contains("30-day mortality (crude): not shown (a count"),
            "{text}"
        );
        assert!(text.contains("30-day readmission (crude): 30.0%"), "{text}");
    }

    /// A small deterministic generator (no dependency): xorshift64.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: i64) -> i64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as i64
        }

        /// A count that is often small, often 0, sometimes large.
        fn count(&mut self, at_most: i64) -> i64 {
            match self.below(4) {
                0 => 0,
                1 => self.below(12).min(at_most),
                _ => self.below(at_most + 1),
            }
        }

        fn totals(&mut self) -> Totals {
            let stays = self.count(60);
            let mortality_episodes = self.count(stays);
            let index_stays = self.count(mortality_episodes);
            let patient_days = stays + self.count(5 * stays);
            let hai_count = self.count(20);
            Totals {
                stays,
                deaths_30d: self.count(mortality_episodes),
                mortality_episodes,
                index_stays,
                readmissions_30d: self.count(index_stays),
                patient_days,
                hai_count,
                hai_stays: self.count(hai_count),
                open_window_index: self.count(index_stays),
                open_window_mortality: self.count(mortality_episodes),
            }
        }
    }

    /// The lines of an e-mail that carry no figure of the tenant's data (the commits line names
    /// commits, not counts).
    const FIXED_LINES: [&str; 4] = [
        "MetricCare refreshed the quality metrics of t1.",
        "Some 30-day windows of the newest months have not ended",
        "No counts are shown",
        "Gold commits: ",
    ];

    #[test]
    fn no_count_from_one_to_ten_can_be_derived_from_one_e_mail_or_two_consecutive_ones() {
        // The counts behind each line, read off the totals here (not through the code under test).
        let behind = |label: &str, t: &Totals| -> Vec<i64> {
            match label {
                "30-day mortality (crude)" => vec![
                    t.deaths_30d,
                    t.mortality_episodes,
                    t.mortality_episodes - t.deaths_30d,
                ],
                "30-day readmission (crude)" => vec![
                    t.readmissions_30d,
                    t.index_stays,
                    t.index_stays - t.readmissions_30d,
                ],
                "Average length of stay (days)" => vec![t.patient_days, t.stays],
                "Hospital-acquired infections per 1,000 patient days" => {
                    vec![t.hai_count, t.patient_days]
                }
                other => panic!("an unexpected line {other:?}"),
            }
        };
        let small = |n: i64| (1..=10).contains(&n.abs());
        let mut random = Random(0x9E37_79B9_7F4A_7C15);
        let mut previous: Option<(Totals, String)> = None;
        let mut checked = (0, 0);
        for refresh in 0..20_000 {
            // GIVEN a tenant's totals: new, or the previous ones each moved by a few or many
            let totals = match &previous {
                Some((p, _)) if random.below(3) > 0 => {
                    let mut step = |n: i64| n + [0, 1, 3, 9, 12, 40][random.below(6) as usize];
                    let mortality_episodes = step(p.mortality_episodes);
                    let index_stays = step(p.index_stays);
                    let stays = step(p.stays).max(mortality_episodes);
                    Totals {
                        stays,
                        deaths_30d: step(p.deaths_30d).min(mortality_episodes),
                        mortality_episodes,
                        index_stays,
                        readmissions_30d: step(p.readmissions_30d).min(index_stays),
                        patient_days: step(p.patient_days).max(stays),
                        hai_count: step(p.hai_count),
                        ..*p
                    }
                }
                _ => random.totals(),
            };
            let h = headline(totals);
            // WHEN its e-mail is written after the previous one
            let prior = previous.as_ref().map(|(t, _)| headline(*t));
            let text = body(
                "t1",
                &h,
                prior.as_ref(),
                &["hospital_monthly@20240101000000000".into()],
            );
            // THEN each line is a rate (a number with a decimal point, or "not shown") or text
            // that is the same in every e-mail: no count is ever shown
            let mut shown = Vec::new();
            for line in text.lines() {
                let fixed = line.is_empty() || FIXED_LINES.iter().any(|f| line.starts_with(f));
                match line.split_once(": ") {
                    Some((label, value)) if !fixed => {
                        let number = value.trim_end_matches('%');
                        let is_rate = number.contains('.') && number.parse::<f64>().is_ok();
                        assert!(
                            value.starts_with("not shown") || is_rate,
                            "refresh {refresh}: {line:?}"
                        );
                        if is_rate {
                            shown.push(label.to_owned());
                        }
                    }
                    _ => assert!(fixed, "refresh {refresh}: {line:?}"),
                }
            }
            // AND no shown rate rests on a small count, its complement included
            for label in &shown {
                for count in behind(label, &totals) {
                    assert!(!small(count), "refresh {refresh}: {label} rests on {count}");
                }
                checked.0 += 1;
            }
            // AND a rate shown in two consecutive e-mails rests on counts that each moved by 0 or
            // by 11 and more: the pair of rates cannot be solved for a small change
            if let Some((before, before_text)) = &previous {
                for label in shown.iter().filter(|l| {
                    before_text.lines().any(|line| {
                        line.starts_with(&format!("{l}: ")) && !line.contains("not shown")
                    })
                }) {
                    for (now, then) in behind(label, &totals)
                        .into_iter()
                        .zip(behind(label, before))
                    {
                        assert!(
                            !small(now - then),
                            "refresh {refresh}: {label} moved by {}",
                            now - then
                        );
                    }
                    checked.1 += 1;
                }
            }
            previous = Some((totals, text));
        }
        // (Both checks met real cases, not only "not shown".)
        assert!(checked.0 > 1_000 && checked.1 > 1_000, "{checked:?}");
    }
}

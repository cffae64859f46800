//! The `gold.refreshed` message: JSON for machine subscribers, a readable body for e-mail.
//!
//! E-mail leaves the analytics boundary, so the body follows the CMS cell-size rule: a count from 1
//! to 10 is shown as "<11", and a rate whose numerator or denominator is such a count is withheld
//! (it would give the count away). The JSON data goes to machine subscribers inside the boundary.

use serde_json::json;

use super::metrics::Headline;
use super::{RefreshReport, TenantRefresh};
use crate::ports::{Message, Topic};

/// A count as an e-mail may show it.
pub fn suppress(count: i64) -> String {
    if (1..=10).contains(&count) {
        "<11".to_owned()
    } else {
        thousands(count)
    }
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn small(count: i64) -> bool {
    (1..=10).contains(&count)
}

/// A rate as an e-mail may show it: withheld when built on a small count.
fn rate(value: f64, numerator: i64, denominator: i64, percent: bool) -> String {
    if small(numerator) || small(denominator) {
        "withheld (<11)".to_owned()
    } else if percent {
        format!("{:.1}%", value * 100.0)
    } else {
        format!("{value:.1}")
    }
}

fn body(tenant: &str, headline: &Headline, gold_instants: &[String]) -> String {
    let (h, t) = (headline, &headline.totals);
    let lines = [
        ("Inpatient stays", suppress(t.stays)),
        (
            "30-day mortality",
            rate(h.mortality_rate, t.deaths_30d, t.mortality_episodes, true),
        ),
        (
            "30-day readmission",
            rate(h.readmission_rate, t.readmissions_30d, t.index_stays, true),
        ),
        (
            "Average length of stay (days)",
            rate(h.alos, t.patient_days, t.stays, false),
        ),
        (
            "Hospital-acquired infections per 1,000 patient days",
            rate(
                h.hai_per_1000_patient_days,
                t.hai_count,
                t.patient_days,
                false,
            ),
        ),
    ];
    let mut text = format!("MetricCare refreshed the quality metrics of {tenant}.\n\n");
    for (label, value) in lines {
        text.push_str(&format!("{label}: {value}\n"));
    }
    // No "was ..." figures: the difference of two shown counts could reveal a count below 11.
    text.push_str(&format!(
        "\nCounts from 1 to 10 are shown as \"<11\" and rates built on them are withheld (CMS cell-size rule).\n\
         The change against the previous refresh is in the message's data for analytics subscribers.\n\
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
        text: body(&tenant.tenant_id, h, &report.gold_instants),
        data: json!({
            "event": "gold.refreshed",
            "tenant_id": tenant.tenant_id,
            "silver_sequences": report.silver_sequences,
            "gold_instants": report.gold_instants,
            "rows": {
                "hospital_monthly": tenant.rows.hospital_monthly.len(),
                "hai_by_code": tenant.rows.hai_by_code.len(),
                "mortality_yearly": tenant.rows.mortality_yearly.len(),
            },
            "headline": h,
            "previous": tenant.previous,
            "change": change,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_one_to_ten_are_suppressed() {
        assert_eq!(suppress(0), "0");
        assert_eq!(suppress(1), "<11");
        assert_eq!(suppress(10), "<11");
        assert_eq!(suppress(11), "11");
        assert_eq!(suppress(1234567), "1,234,567");
    }

    #[test]
    fn rates_on_small_counts_are_withheld() {
        let h = Headline {
            totals: crate::gold::metrics::Totals {
                stays: 200,
                deaths_30d: 4,
                mortality_episodes: 195,
                index_stays: 190,
                readmissions_30d: 30,
                patient_days: 900,
                hai_count: 12,
                hai_stays: 11,
                open_window_index: 0,
                open_window_mortality: 0,
            },
            mortality_rate: 0.02,
            readmission_rate: 30.0 / 190.0,
            alos: 4.5,
            hai_per_1000_patient_days: 13.3,
        };
        let text = body("t1", &h, &[]);
        assert!(text.contains("30-day mortality: withheld (<11)"), "{text}");
        assert!(text.contains("30-day readmission: 15.8%"), "{text}");
        assert!(text.contains("Inpatient stays: 200"), "{text}");
        assert!(!text.contains(": 4\n"), "{text}");
    }
}

//! The analysts' report: one self-contained HTML file (inline SVG charts, no script, no network)
//! with, per tenant, the monthly trend of each rate per hospital (months whose 30-day windows are
//! still open marked), HAI by code (donut), readmission rate by hospital (bar), mortality by year
//! (line), ALOS and the per-hospital table, each chart with a note of what it counts and excludes.
//! It reads only gold.

use std::collections::BTreeMap;
use std::fmt::Write;

use metriccare_core::gold::GoldRows;
use metriccare_core::gold::metrics::{HospitalMonth, HospitalTotals};

const PALETTE: [&str; 8] = [
    "#1b6ca8", "#e07b39", "#3a9d5d", "#c0392b", "#8e44ad", "#16a085", "#d4ac0d", "#7f8c8d",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn donut(rows: &GoldRows) -> String {
    let mut by_code: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in &rows.hai_by_code {
        *by_code.entry((&r.code, &r.display)).or_default() += r.count;
    }
    let total: i64 = by_code.values().sum();
    if total == 0 {
        return "<p class=\"empty\">No hospital-acquired infections.</p>".to_owned();
    }
    let (radius, circumference) = (60.0, 2.0 * std::f64::consts::PI * 60.0);
    let mut svg = String::from(
        "<svg viewBox=\"0 0 160 160\" width=\"200\" height=\"200\" role=\"img\" aria-label=\"HAI by code\">",
    );
    let mut legend = String::from("<ul class=\"legend\">");
    let mut offset = 0.0;
    for (i, ((code, display), count)) in by_code.iter().enumerate() {
        let length = circumference * *count as f64 / total as f64;
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(
            svg,
            "<circle cx=\"80\" cy=\"80\" r=\"{radius}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"28\" \
             stroke-dasharray=\"{length:.3} {rest:.3}\" stroke-dashoffset=\"{dash:.3}\" transform=\"rotate(-90 80 80)\"><title>{label}: {count}</title></circle>",
            rest = circumference - length,
            dash = -offset,
            label = escape(display),
        );
        let _ = write!(
            legend,
            "<li><span class=\"swatch\" style=\"background:{color}\"></span>{} <small>{}</small>: {count} ({})</li>",
            escape(display),
            escape(code),
            percent(*count as f64 / total as f64)
        );
        offset += length;
    }
    let _ = write!(
        svg,
        "<text x=\"80\" y=\"86\" text-anchor=\"middle\" class=\"big\">{total}</text></svg>"
    );
    legend.push_str("</ul>");
    format!("<div class=\"donut\">{svg}{legend}</div>")
}

fn bars(hospitals: &[HospitalTotals]) -> String {
    if hospitals.is_empty() {
        return "<p class=\"empty\">No inpatient stays.</p>".to_owned();
    }
    let rates: Vec<f64> = hospitals
        .iter()
        .map(|h| h.totals.readmission_rate())
        .collect();
    let max = rates.iter().cloned().fold(0.0_f64, f64::max).max(0.01);
    let (row, width) = (28.0, 300.0);
    let height = row * hospitals.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg viewBox=\"0 0 560 {height}\" width=\"560\" role=\"img\" aria-label=\"Readmission rate by hospital\">"
    );
    for (i, (h, rate)) in hospitals.iter().zip(&rates).enumerate() {
        let y = 5.0 + row * i as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty:.1}\" class=\"label\">{name}</text><rect x=\"200\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\"><title>{name}: {p}</title></rect><text x=\"{tx:.1}\" y=\"{ty:.1}\" class=\"label\">{p}</text>",
            ty = y + 14.0,
            name = escape(&h.hospital_name),
            w = width * rate / max,
            color = PALETTE[0],
            tx = 205.0 + width * rate / max,
            p = percent(*rate),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn line(rows: &GoldRows) -> String {
    let points: Vec<(i32, f64)> = rows
        .mortality_yearly
        .iter()
        .map(|r| (r.year, r.rate))
        .collect();
    if points.is_empty() {
        return "<p class=\"empty\">No inpatient stays.</p>".to_owned();
    }
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(0.01);
    let (left, top, width, height) = (50.0, 26.0, 460.0, 144.0);
    let step = if points.len() > 1 {
        width / (points.len() - 1) as f64
    } else {
        0.0
    };
    let xy = |i: usize, rate: f64| (left + step * i as f64, top + height - height * rate / max);
    let mut svg = String::from(
        "<svg viewBox=\"0 0 560 210\" width=\"560\" role=\"img\" aria-label=\"30-day mortality by year\">",
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/><text x=\"0\" y=\"{t}\" class=\"label\">{m}</text><text x=\"0\" y=\"{b}\" class=\"label\">0%</text>",
        b = top + height,
        r = left + width,
        t = top + 10.0,
        m = percent(max),
    );
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.1);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\"/>",
        path.join(" "),
        PALETTE[3]
    );
    for (i, (year, rate)) in points.iter().enumerate() {
        let (x, y) = xy(i, *rate);
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{c}\"><title>{year}: {p}</title></circle><text x=\"{x:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" class=\"label\">{year}</text><text x=\"{x:.1}\" y=\"{py:.1}\" text-anchor=\"middle\" class=\"label\">{p}</text>",
            c = PALETTE[3],
            ly = top + height + 22.0,
            py = y - 8.0,
            p = percent(*rate),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn table(hospitals: &[HospitalTotals]) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>Hospital</th><th>Stays</th><th>Episodes</th><th>30-day deaths</th><th>Mortality (crude)</th>\
         <th>Index episodes</th><th>Readmissions</th><th>Readmission rate (crude)</th><th>Open 30-day windows (mortality / readmission)</th>\
         <th>Patient days</th><th>ALOS</th><th>HAIs</th><th>Stays with HAI</th><th>HAI / 1,000 days</th></tr></thead><tbody>",
    );
    for hospital in hospitals {
        let h = &hospital.totals;
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            escape(&hospital.hospital_name),
            h.stays,
            h.mortality_episodes,
            h.deaths_30d,
            percent(h.mortality_rate()),
            h.index_stays,
            h.readmissions_30d,
            percent(h.readmission_rate()),
            h.open_window_mortality,
            h.open_window_index,
            h.patient_days,
            h.alos(),
            h.hai_count,
            h.hai_stays,
            h.hai_per_1000_patient_days(),
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// One monthly rate of the trend charts: how to read it off a row, whether the row's month still
/// has open 30-day windows for it, and the note printed under its chart.
struct Trend {
    title: &'static str,
    value: fn(&HospitalMonth) -> f64,
    open: fn(&HospitalMonth) -> bool,
    percent: bool,
    note: &'static str,
}

const TRENDS: [Trend; 4] = [
    Trend {
        title: "30-day mortality (crude) by month of first discharge",
        value: |r| r.mortality_rate,
        open: |r| r.open_window_mortality > 0,
        percent: true,
        note: "Episodes (stays chained by transfer) counted at their first hospital, in the month of the \
               first discharge; deaths within 30 days of the first admission. Unadjusted, all payers. A \
               death recorded without a date is not counted.",
    },
    Trend {
        title: "30-day readmission (crude) by month of last discharge",
        value: |r| r.readmission_rate,
        open: |r| r.open_window_index > 0,
        percent: true,
        note: "Index episodes counted at their last hospital, in the month of the last discharge: \
               excludes episodes ending in death, discharged expired or against medical advice. \
               Readmitted: a new episode admitted within 30 days. Unadjusted, all payers.",
    },
    Trend {
        title: "Average length of stay (days) by month of discharge",
        value: |r| r.alos,
        open: |_| false,
        percent: false,
        note: "Every inpatient stay of the month, at least one day each; transfers count as separate stays.",
    },
    Trend {
        title: "Hospital-acquired infections per 1,000 patient days by month of discharge",
        value: |r| r.hai_per_1000_patient_days,
        open: |_| false,
        percent: false,
        note: "Infections of the value set with onset from day 3 of the stay to discharge; excludes \
               refuted and entered-in-error conditions and repeats within NHSN's 14-day window. Not \
               device-associated rates, not a SIR.",
    },
];

/// One line per hospital over the tenant's months; a hollow point is a month whose 30-day
/// windows had not all ended at the refresh (its rate can still rise).
fn trend(rows: &GoldRows, trend: &Trend) -> String {
    let months: Vec<&str> = {
        let mut m: Vec<&str> = rows
            .hospital_monthly
            .iter()
            .map(|r| r.month.as_str())
            .collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    if months.is_empty() {
        return "<p class=\"empty\">No inpatient stays.</p>".to_owned();
    }
    let mut by_hospital: BTreeMap<(&str, &str), Vec<&HospitalMonth>> = BTreeMap::new();
    for r in &rows.hospital_monthly {
        by_hospital
            .entry((&r.hospital_name, &r.hospital_id))
            .or_default()
            .push(r);
    }
    let max = rows
        .hospital_monthly
        .iter()
        .map(trend.value)
        .fold(0.0_f64, f64::max)
        .max(0.01);
    let (left, top, width, height) = (60.0, 16.0, 620.0, 150.0);
    let step = if months.len() > 1 {
        width / (months.len() - 1) as f64
    } else {
        0.0
    };
    let x = |month: &str| left + step * months.binary_search(&month).unwrap_or(0) as f64;
    let y = |value: f64| top + height - height * value / max;
    let shown = |value: f64| {
        if trend.percent {
            percent(value)
        } else {
            format!("{value:.2}")
        }
    };
    let mut svg = format!(
        "<svg viewBox=\"0 0 700 200\" width=\"700\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/>\
         <text x=\"0\" y=\"{t}\" class=\"label\">{m}</text><text x=\"0\" y=\"{b}\" class=\"label\">0</text>\
         <text x=\"{left}\" y=\"196\" class=\"label\">{first}</text><text x=\"{r}\" y=\"196\" class=\"label\" text-anchor=\"end\">{last}</text>",
        escape(trend.title),
        b = top + height,
        r = left + width,
        t = top + 10.0,
        m = shown(max),
        first = months[0],
        last = months[months.len() - 1],
    );
    let mut legend = String::from("<ul class=\"legend\">");
    for (i, ((name, _), points)) in by_hospital.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(&r.month), y((trend.value)(r))))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for r in points {
            let open = (trend.open)(r);
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\" stroke=\"{color}\" stroke-width=\"1.5\"><title>{} {}: {}{}</title></circle>",
                x(&r.month),
                y((trend.value)(r)),
                if open { "white" } else { color },
                escape(name),
                r.month,
                shown((trend.value)(r)),
                if open {
                    " (windows still open: can still rise)"
                } else {
                    ""
                },
            );
        }
        let _ = write!(
            legend,
            "<li><span class=\"swatch\" style=\"background:{color}\"></span>{}</li>",
            escape(name)
        );
    }
    svg.push_str("</svg>");
    legend.push_str("</ul>");
    format!(
        "{svg}{legend}<p class=\"note\">{} A hollow point: a month whose 30-day windows had not all ended at the refresh.</p>",
        trend.note
    )
}

/// The whole report.
pub fn report(gold: &BTreeMap<String, GoldRows>, generated_at: &str) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>MetricCare quality report</title><style>\
         body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1100px}\
         h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:2px solid #1b6ca8;padding-bottom:.3rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}\
         .cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f3f6f9;border-radius:8px;padding:.7rem 1rem;min-width:150px}\
         .card b{display:block;font-size:1.4rem}.donut{display:flex;align-items:center;gap:1.5rem}.legend{list-style:none;padding:0}\
         .legend li{margin:.25rem 0}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;border-radius:2px}\
         .big{font-size:22px;font-weight:600}.label{font-size:12px;fill:#333}.axis{stroke:#999}\
         table{border-collapse:collapse;font-size:.85rem;margin-top:.5rem}th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:right}\
         th:first-child,td:first-child{text-align:left}thead{background:#f3f6f9}.empty{color:#777}footer{margin-top:3rem;color:#777;font-size:.8rem}\
         .note{color:#555;font-size:.8rem;max-width:700px}\
         </style></head><body><h1>MetricCare quality report</h1>",
    );
    if gold.is_empty() {
        html.push_str("<p class=\"empty\">No gold metrics yet: run <code>metriccare gold</code> after ingesting data.</p>");
    }
    for (tenant, rows) in gold {
        let h = rows.headline();
        let hospitals = rows.per_hospital();
        let trends: String = TRENDS
            .iter()
            .map(|t| format!("<h3>{}</h3>{}", escape(t.title), trend(rows, t)))
            .collect();
        let _ = write!(
            html,
            "<h2>{}</h2><div class=\"cards\"><div class=\"card\">Inpatient stays<b>{}</b></div>\
             <div class=\"card\">30-day mortality (crude)<b>{}</b></div><div class=\"card\">30-day readmission (crude)<b>{}</b></div>\
             <div class=\"card\">Average length of stay<b>{:.2} days</b></div><div class=\"card\">HAI per 1,000 patient days<b>{:.2}</b></div></div>\
             {}<h3>Hospital-acquired infections by code</h3>{}\
             <h3>30-day readmission rate by hospital</h3>{}\
             <h3>30-day mortality by year of discharge</h3>{}\
             <h3>Per hospital</h3>{}",
            escape(tenant),
            h.totals.stays,
            percent(h.mortality_rate),
            percent(h.readmission_rate),
            h.alos,
            h.hai_per_1000_patient_days,
            trends,
            donut(rows),
            bars(&hospitals),
            line(rows),
            table(&hospitals),
        );
    }
    let _ = write!(
        html,
        "<footer>Generated {generated_at} from the gold tables. Definitions: docs/metrics.md. Aggregates only; no patient-level data.</footer></body></html>"
    );
    html
}

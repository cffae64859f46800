"""The DuckDB peer: gold's `hospital_monthly` from the silver Parquet files in DuckDB SQL, 1 thread.

What an analytics engineer would write in SQL for the same measures (docs/metrics.md, version 2),
written for speed: `read_parquet` reads only the columns gold reads (the condition table twice: once
for its few distinct codings texts, which are parsed as JSON once each instead of once per row, then
for the rows whose text lists an infection code, a join DuckDB does on the Parquet dictionary); days
are integer arithmetic on epoch microseconds; stays are numbered so later joins are on numbers, not
32-character keys; and only what is sequential is walked with recursive CTEs:
  - episodes: one window pass over each patient's stays in admission order. A stay admitted after
    the calendar day following every earlier discharge of its patient certainly opens an episode;
    a stay that opens and is followed by one that opens is an episode alone (most stays), judged
    in that pass, its readmission candidate being the next stay. Only the runs between openers
    (transfers, overlaps, returns within a day) are walked stay by stay, carrying the episode's
    first stay and its latest discharge (hospital, end, day, disposition); their readmissions are
    an ASOF join on the episode starts after the last discharge;
  - the 14-day repeat infection timeframe: per patient and listed code, an ASOF join links each
    onset day to the first day 14 or more days later, and a recursive CTE follows the links from
    the first onset;
  - `partOf` chains: followed up to 16 steps (a cycle or a longer chain reaches no top).
`SET threads = 1`: the one-core comparison with `metriccare gold`.

The Hudi file listing (the latest base file of each file group, through the `hudi` reader's file
slices) is timed apart from the SQL; the SQL's time includes its Parquet reads and the write of
the result.

Left out: what MetricCare does around the numbers (the incremental refresh by silver commits, the
lock, the Hudi commits of the gold tables, the notification), the other gold tables (`hai_by_code`,
`mortality_yearly`, `stay_detail`), and tenant profiles: this peer supports the default profile
only (UTC clock, v3 ActCode IMP/ACUTE/NONAC under its three names, the built-in HAI value set
`functions/core/hai-value-set.json`), which is what the benchmark lakes use. One difference of no
consequence on generated data: onsets of one patient's infection code on the same day in two
overlapping stays count once on both sides, but which stay gets it follows each one's row order.
Written to be given the advantage, not to lose.

    python duckdb_gold.py --lake L --tenant t1 --out hospital_monthly.parquet
"""

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent.parent
VALUE_SET = ROOT / "functions/core/hai-value-set.json"
ICD_10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
ACT_CODE = ["http://terminology.hl7.org/CodeSystem/v3-ActCode", "http://hl7.org/fhir/v3/ActCode",
            "urn:oid:2.16.840.1.113883.5.4"]
HL7_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
NUBC = ["http://www.nubc.org/patient-discharge",
        "https://www.nubc.org/CodeSystem/PatDischargeStatus"]


def latest_files(lake: Path, table: str, tenant: str) -> list[str]:
    """The latest base file of each of the tenant's file groups (the Hudi snapshot)."""
    from hudi import HudiTableBuilder
    base = lake / "silver" / table
    if not (base / ".hoodie").exists():
        return []
    slices = HudiTableBuilder.from_base_uri(str(base)).build().get_file_slices()
    return sorted(str(base / s.base_file_relative_path()) for s in slices
                  if s.partition_path == f"tenant_id={tenant}")


def q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def qlist(items: list[str]) -> str:
    return "[" + ", ".join(map(q, items)) + "]"


def qtuple(items: list[str]) -> str:
    return "(" + ", ".join(map(q, items)) + ")"


def statements(files: dict[str, list[str]], as_of_us: int) -> list[str]:
    """The SQL, in order; the last one selects hospital_monthly."""
    def scan(table: str, columns: str, default: str) -> str:
        # A tenant without a table's files reads an empty relation of the same columns.
        if files[table]:
            return f"(SELECT {columns} FROM read_parquet({qlist(files[table])}))"
        return f"(SELECT {default} WHERE false)"

    day_us = 86_400_000_000
    encounters = scan(
        "encounter",
        "encounter_key, patient_key, status, class_code, class_system, period_start, period_end, "
        "hospital_key, hospital_name, part_of_key, discharge_disposition, "
        "discharge_disposition_system",
        "NULL::VARCHAR AS encounter_key, NULL::VARCHAR AS patient_key, NULL::VARCHAR AS status, "
        "NULL::VARCHAR AS class_code, NULL::VARCHAR AS class_system, "
        "NULL::TIMESTAMPTZ AS period_start, NULL::TIMESTAMPTZ AS period_end, "
        "NULL::VARCHAR AS hospital_key, NULL::VARCHAR AS hospital_name, "
        "NULL::VARCHAR AS part_of_key, NULL::VARCHAR AS discharge_disposition, "
        "NULL::VARCHAR AS discharge_disposition_system")
    conditions = scan(
        "condition",
        "encounter_key, verification_status, code_system, code, code_codings, onset_at, "
        "recorded_at",
        "NULL::VARCHAR AS encounter_key, NULL::VARCHAR AS verification_status, "
        "NULL::VARCHAR AS code_system, NULL::VARCHAR AS code, NULL::VARCHAR AS code_codings, "
        "NULL::TIMESTAMPTZ AS onset_at, NULL::TIMESTAMPTZ AS recorded_at")
    patients = scan("patient", "patient_key, deceased_at",
                    "NULL::VARCHAR AS patient_key, NULL::TIMESTAMPTZ AS deceased_at")
    organizations = scan("organization", "organization_key, identifier_key, name",
                         "NULL::VARCHAR AS organization_key, NULL::VARCHAR AS identifier_key, "
                         "NULL::VARCHAR AS name")
    def norm(system: str, code: str) -> str:
        """A code's match key: ICD-10-CM codes without their dot."""
        return f"CASE WHEN {system} = {q(ICD_10_CM)} THEN replace({code}, '.', '') ELSE {code} END"

    # Codings key of a condition row: its `code_codings` text, else its one coding.
    codings_key = "coalesce(code_codings, chr(1) || coalesce(code_system, '') || chr(1) || code)"
    as_of_day = f"day_of(make_timestamp({as_of_us}))"

    def died(admission: str) -> str:
        """30-day death of an episode first admitted on that day."""
        return f"coalesce(death BETWEEN {admission} AND {admission} + 30, false)"

    def mortality_open(admission: str) -> str:
        return f"({admission} + 30 >= {as_of_day})"

    def index(discharge: str) -> str:
        """An index episode: alive at its last discharge, not discharged dead or against advice."""
        return (f"NOT coalesce(death <= {discharge}"
                f" OR (disp IN ('exp', 'aadvice')"
                f" AND (disp_system IS NULL OR disp_system = {q(HL7_DISPOSITION)}))"
                f" OR (disp IN ('20', '40', '41', '42', '07')"
                f" AND (disp_system IS NULL OR disp_system IN {qtuple(NUBC)})), false)")

    def readmission_open(discharge: str) -> str:
        return f"({discharge} + 30 >= {as_of_day})"

    return [
        "SET threads = 1",
        "SET preserve_insertion_order = false",
        # Floor division of epoch µs into days (UTC: a midnight-UTC instant is that date anyway).
        f"CREATE OR REPLACE TEMP MACRO day_of(t) AS "
        f"(epoch_us(t) - ((epoch_us(t) % {day_us} + {day_us}) % {day_us})) // {day_us}",
        # The value set, in its file's order (the position is the listed code's identity).
        f"""CREATE OR REPLACE TEMP TABLE vs AS
            SELECT i - 1 AS pos, c.system AS system, {norm('c.system', 'c.code')} AS norm
            FROM (SELECT unnest(codes) AS c, generate_subscripts(codes, 1) AS i
                  FROM read_json({q(str(VALUE_SET))}, columns = {{'codes':
                      'STRUCT(system VARCHAR, code VARCHAR, display VARCHAR)[]'}}))""",
        # Each distinct codings text (or single coding) → the listed code of its first coding in
        # the value set.
        f"""CREATE OR REPLACE TEMP TABLE listed AS
            WITH seen AS (
                SELECT DISTINCT {codings_key} AS key, code_codings, code_system, code
                FROM {conditions} WHERE code_codings IS NOT NULL OR code IS NOT NULL),
            parsed AS (
                SELECT key, CASE WHEN code_codings IS NOT NULL
                    THEN json_transform(code_codings, '[{{"system":"VARCHAR","code":"VARCHAR"}}]')
                    ELSE [{{'system': code_system, 'code': code}}] END AS codings
                FROM seen),
            codings AS (
                SELECT key, unnest(generate_series(1, len(codings))) AS i, unnest(codings) AS c
                FROM parsed)
            SELECT key, min_by(vs.pos, (i, vs.pos)) AS pos
            FROM codings JOIN vs ON vs.system = c.system
                AND vs.norm = {norm('c.system', 'c.code')}
            GROUP BY key""",
        # What gold reads of the encounters: stays, and encounters part of another. A stay's id
        # is its row id here: the joins below are on numbers, not on 32-character keys.
        f"""CREATE OR REPLACE TEMP TABLE enc AS
            SELECT coalesce(encounter_key, '') AS k, coalesce(patient_key, '') AS p,
                   CASE WHEN part_of_key <> coalesce(encounter_key, '') THEN part_of_key END
                       AS parent,
                   coalesce(hospital_key, 'unknown') AS h, hospital_name AS hn,
                   epoch_us(period_start) AS s, epoch_us(period_end) AS e,
                   day_of(period_start) AS ad, day_of(period_end) AS dd,
                   discharge_disposition AS disp, discharge_disposition_system AS disp_system
            FROM {encounters}
            WHERE part_of_key <> coalesce(encounter_key, '')
               OR ((part_of_key IS NULL OR part_of_key = coalesce(encounter_key, ''))
                   AND status IN ('finished', 'completed')
                   AND class_code IN ('IMP', 'ACUTE', 'NONAC')
                   AND (class_system IS NULL OR class_system IN {qtuple(ACT_CODE)})
                   AND period_end >= period_start)""",
        """CREATE OR REPLACE TEMP VIEW stays AS
            SELECT rowid AS id, * EXCLUDE (parent) FROM enc WHERE parent IS NULL""",
        # partOf chains to their top, up to 16 steps.
        """CREATE OR REPLACE TEMP TABLE tops AS
            WITH RECURSIVE up(k, cur, steps) AS (
                SELECT k, parent, 1 FROM enc WHERE parent IS NOT NULL
                UNION ALL
                SELECT up.k, e.parent, up.steps + 1
                FROM up JOIN enc e ON e.k = up.cur AND e.parent IS NOT NULL
                WHERE up.steps < 16)
            SELECT up.k, up.cur AS top FROM up
            WHERE NOT EXISTS (SELECT 1 FROM enc e WHERE e.k = up.cur AND e.parent IS NOT NULL)""",
        # Infections in their stay's window (day 3 to the discharge day).
        f"""CREATE OR REPLACE TEMP TABLE onsets AS
            SELECT st.p, l.pos, c.day, st.id AS stay
            FROM (SELECT encounter_key, {codings_key} AS key,
                         day_of(coalesce(onset_at, recorded_at)) AS day
                  FROM {conditions}
                  WHERE encounter_key IS NOT NULL
                    AND coalesce(onset_at, recorded_at) IS NOT NULL
                    AND (verification_status IS NULL
                         OR verification_status NOT IN ('entered-in-error', 'refuted'))) c
            JOIN listed l ON l.key = c.key
            LEFT JOIN tops t ON t.k = c.encounter_key
            JOIN stays st ON st.k = coalesce(t.top, c.encounter_key)
            WHERE c.day BETWEEN st.ad + 2 AND st.dd""",
        # The repeat infection timeframe: per patient and listed code, an onset day's link to the
        # first day 14 or more days later; the counted days are the chain from the first one.
        """CREATE OR REPLACE TEMP TABLE onset_days AS
            WITH days AS (SELECT DISTINCT p, pos, day, day + 14 AS window_end FROM onsets)
            SELECT a.p, a.pos, a.day, b.day AS next_day
            FROM days a ASOF LEFT JOIN days b
                ON a.p = b.p AND a.pos = b.pos AND b.day >= a.window_end""",
        """CREATE OR REPLACE TEMP TABLE hai_per_stay AS
            WITH RECURSIVE sweep(p, pos, day) AS (
                SELECT p, pos, min(day) FROM onset_days GROUP BY p, pos
                UNION ALL
                SELECT n.p, n.pos, n.next_day FROM sweep s
                JOIN onset_days n ON n.p = s.p AND n.pos = s.pos AND n.day = s.day
                WHERE n.next_day IS NOT NULL),
            counted AS (
                SELECT min(o.stay) AS stay FROM sweep s
                JOIN onsets o ON o.p = s.p AND o.pos = s.pos AND o.day = s.day
                GROUP BY s.p, s.pos, s.day)
            SELECT stay, count(*) AS hai FROM counted GROUP BY stay""",
        # Episodes. One pass over each patient's stays in admission order. A stay admitted after
        # the day following every earlier discharge (`opens`) certainly starts an episode; a stay
        # that opens and whose next stay opens too is an episode alone, and that next stay (if
        # any) is its readmission candidate (it starts after this discharge, and no episode
        # starts earlier after it). Only the runs between openers are walked.
        """CREATE OR REPLACE TEMP TABLE ordered AS
            SELECT *, rn = 1 OR ad > prior_max + 1 AS opens,
                   next_ad IS NULL OR next_ad > run_max + 1 AS next_opens
            FROM (SELECT id, p, h, s, e, ad, dd, disp, disp_system,
                         row_number() OVER o AS rn,
                         max(dd) OVER (o ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                             AS prior_max,
                         max(dd) OVER (o ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                             AS run_max,
                         lead(s) OVER o AS next_s, lead(ad) OVER o AS next_ad
                  FROM stays WINDOW o AS (PARTITION BY p ORDER BY s, e, k))""",
        """CREATE OR REPLACE TEMP TABLE multi AS
            SELECT * FROM ordered WHERE NOT (opens AND next_opens)""",
        # The runs, stay by stay: a stay at another hospital than the episode's latest discharge,
        # admitted by the day after it, continues the episode; the latest discharge moves on when
        # the stay ends later.
        """CREATE OR REPLACE TEMP TABLE walk AS
            WITH RECURSIVE walk(p, rn, first_id, first_h, first_ad, first_dd, first_s,
                                last_h, last_e, last_dd, last_disp, last_disp_system) AS (
                SELECT p, rn, id, h, ad, dd, s, h, e, dd, disp, disp_system
                FROM multi WHERE opens
                UNION ALL
                SELECT m.p, m.rn,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 THEN w.first_id
                            ELSE m.id END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 THEN w.first_h
                            ELSE m.h END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 THEN w.first_ad
                            ELSE m.ad END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 THEN w.first_dd
                            ELSE m.dd END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 THEN w.first_s
                            ELSE m.s END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 AND m.e <= w.last_e
                            THEN w.last_h ELSE m.h END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 AND m.e <= w.last_e
                            THEN w.last_e ELSE m.e END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 AND m.e <= w.last_e
                            THEN w.last_dd ELSE m.dd END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 AND m.e <= w.last_e
                            THEN w.last_disp ELSE m.disp END,
                       CASE WHEN m.h <> w.last_h AND m.ad <= w.last_dd + 1 AND m.e <= w.last_e
                            THEN w.last_disp_system ELSE m.disp_system END
                FROM walk w JOIN multi m ON m.p = w.p AND m.rn = w.rn + 1 AND NOT m.opens)
            SELECT * FROM walk""",
        # The walked episodes, each with its state after its last member.
        """CREATE OR REPLACE TEMP TABLE walked AS
            SELECT p, first_id, any_value(first_h) AS first_h, any_value(first_ad) AS first_ad,
                   any_value(first_dd) AS first_dd, any_value(first_s) AS first_s,
                   arg_max(last_h, rn) AS last_h, arg_max(last_e, rn) AS last_e,
                   arg_max(last_dd, rn) AS last_dd, arg_max(last_disp, rn) AS disp,
                   arg_max(last_disp_system, rn) AS disp_system
            FROM walk GROUP BY p, first_id""",
        # Every stay's contribution to its cell, the one-stay episodes' measures with it, then the
        # walked episodes' mortality (first stay's cell) and readmission (last stay's cell).
        f"""CREATE OR REPLACE TEMP TABLE contributions AS
            WITH deaths AS (
                SELECT coalesce(patient_key, '') AS p, any_value(day_of(deceased_at)) AS death
                FROM {patients} WHERE deceased_at IS NOT NULL GROUP BY 1),
            -- A walked episode's readmission candidates: the walked episodes' first stays and
            -- the stay after each run (it opens an episode).
            starts AS (
                SELECT p, first_s AS s, first_ad AS ad FROM walked
                UNION ALL
                SELECT p, next_s, next_ad FROM multi WHERE next_opens AND next_s IS NOT NULL),
            judged AS (
                SELECT w.*, d.death, nx.ad AS next_ad
                FROM walked w LEFT JOIN deaths d USING (p)
                ASOF LEFT JOIN starts nx ON nx.p = w.p AND nx.s > w.last_e),
            single AS (
                SELECT o.h, o.dd, o.ad, o.disp, o.disp_system, o.next_ad,
                       o.opens AND o.next_opens AS alone, d.death, hs.hai
                FROM ordered o LEFT JOIN deaths d USING (p) LEFT JOIN hai_per_stay hs
                    ON hs.stay = o.id)
            SELECT h, dd, 1 AS stays, greatest(1, dd - ad) AS los, coalesce(hai, 0) AS hai,
                   (hai IS NOT NULL)::INT AS hai_stay,
                   alone::INT AS mortality_episode, alone AND {died('ad')} AS died,
                   alone AND {mortality_open('ad')} AS mortality_open,
                   alone AND {index('dd')} AS idx,
                   alone AND {index('dd')} AND coalesce(next_ad <= dd + 30, false) AS readmitted,
                   alone AND {index('dd')} AND {readmission_open('dd')} AS readmission_open
            FROM single
            UNION ALL
            SELECT first_h, first_dd, 0, 0, 0, 0, 1, {died('first_ad')},
                   {mortality_open('first_ad')}, false, false, false
            FROM judged
            UNION ALL
            SELECT last_h, last_dd, 0, 0, 0, 0, 0, false, false, {index('last_dd')},
                   {index('last_dd')} AND coalesce(next_ad <= last_dd + 30, false),
                   {index('last_dd')} AND {readmission_open('last_dd')}
            FROM judged""",
        # The cells: per hospital and discharge month.
        f"""WITH names AS (
                SELECT organization_key AS id, min(name) AS name FROM {organizations}
                WHERE name IS NOT NULL AND organization_key IS NOT NULL GROUP BY 1),
            aliases AS (
                SELECT identifier_key AS id, min(name) AS name FROM {organizations}
                WHERE name IS NOT NULL AND identifier_key IS NOT NULL GROUP BY 1),
            hospital_days AS (
                SELECT h, dd, sum(stays) AS stays, sum(los) AS patient_days, sum(hai) AS hai_count,
                       sum(hai_stay) AS hai_stays, sum(mortality_episode) AS mortality_episodes,
                       count(*) FILTER (died) AS deaths_30d,
                       count(*) FILTER (mortality_open) AS open_window_mortality,
                       count(*) FILTER (idx) AS index_stays,
                       count(*) FILTER (readmitted) AS readmissions_30d,
                       count(*) FILTER (readmission_open) AS open_window_index
                FROM contributions GROUP BY h, dd),
            cells AS (
                SELECT h, strftime(DATE '1970-01-01' + dd::INTEGER, '%Y-%m') AS month,
                       sum(stays)::BIGINT AS stays, sum(patient_days)::BIGINT AS patient_days,
                       sum(hai_count)::BIGINT AS hai_count, sum(hai_stays)::BIGINT AS hai_stays,
                       sum(mortality_episodes)::BIGINT AS mortality_episodes,
                       sum(deaths_30d)::BIGINT AS deaths_30d,
                       sum(open_window_mortality)::BIGINT AS open_window_mortality,
                       sum(index_stays)::BIGINT AS index_stays,
                       sum(readmissions_30d)::BIGINT AS readmissions_30d,
                       sum(open_window_index)::BIGINT AS open_window_index
                FROM hospital_days GROUP BY ALL),
            -- The smallest serviceProvider display per cell, for hospitals without a name.
            displays AS (
                SELECT h, strftime(DATE '1970-01-01' + dd::INTEGER, '%Y-%m') AS month,
                       min(hn) AS hn
                FROM stays WHERE hn IS NOT NULL AND h NOT IN (SELECT id FROM names)
                    AND h NOT IN (SELECT id FROM aliases)
                GROUP BY ALL)
            SELECT c.h AS hospital_id,
                   coalesce(n.name, a.name, d.hn, c.h) AS hospital_name,
                   c.month, c.stays, c.deaths_30d, c.mortality_episodes,
                   coalesce(c.deaths_30d / nullif(c.mortality_episodes, 0), 0) AS mortality_rate,
                   c.index_stays, c.readmissions_30d,
                   coalesce(c.readmissions_30d / nullif(c.index_stays, 0), 0) AS readmission_rate,
                   c.patient_days, c.patient_days / c.stays AS alos, c.hai_count, c.hai_stays,
                   coalesce(c.hai_count * 1000 / nullif(c.patient_days, 0), 0)
                       AS hai_per_1000_patient_days,
                   c.open_window_index, c.open_window_mortality, 2 AS measure_version
            FROM cells c
            LEFT JOIN names n ON n.id = c.h LEFT JOIN aliases a ON a.id = c.h
            LEFT JOIN displays d ON d.h = c.h AND d.month = c.month
            ORDER BY hospital_name, hospital_id, month""",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lake", required=True, type=Path)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--out", required=True, help="hospital_monthly as Parquet")
    parser.add_argument("--as-of", type=int, help="the instant open windows are judged at, in µs "
                        "since the epoch (gold's refreshed_at, to compare with it); default: now")
    args = parser.parse_args()
    as_of_us = args.as_of if args.as_of is not None else time.time_ns() // 1000
    started = time.perf_counter()
    files = {t: latest_files(args.lake.resolve(), t, args.tenant)
             for t in ("patient", "encounter", "condition", "organization")}
    listed = time.perf_counter()
    con = duckdb.connect()
    *setup, final = statements(files, as_of_us)
    for sql in setup:
        con.execute(sql)
    result = con.sql(final)
    result.write_parquet(args.out)
    stays = con.execute("SELECT sum(stays) FROM contributions").fetchone()[0]
    done = time.perf_counter()
    rows = con.execute(f"SELECT count(*) FROM read_parquet({q(args.out)})").fetchone()[0]
    print(json.dumps({"rows": rows, "stays": stays, "list_seconds": round(listed - started, 3),
                      "sql_seconds": round(done - listed, 3)}))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.3f} s", file=sys.stderr)

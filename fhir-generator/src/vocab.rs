//! Static vocabularies. Every string here is plain ASCII without `"` or `\`
//! so it can be written into JSON without escaping (checked by a test).

pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const SYNTHEA_SYSTEM: &str = "https://github.com/synthetichealth/synthea";

/// A condition code (SNOMED CT) with an ICD-10-CM translation used as an
/// extra (second) coding on some Conditions.
#[derive(Debug)]
pub struct Code {
    pub code: &'static str,
    pub display: &'static str,
    pub hai: bool,
    pub icd10: &'static str,
    pub icd10_display: &'static str,
}

const fn c(
    code: &'static str,
    display: &'static str,
    hai: bool,
    icd: &'static str,
    icd_d: &'static str,
) -> Code {
    Code {
        code,
        display,
        hai,
        icd10: icd,
        icd10_display: icd_d,
    }
}

/// Condition codes. Indices `0..HAI_COUNT` are the HAI value set.
pub const CODES: &[Code] = &[
    c(
        "91302008",
        "Sepsis (disorder)",
        true,
        "A41.9",
        "Sepsis, unspecified organism",
    ),
    c(
        "233604007",
        "Pneumonia (disorder)",
        true,
        "J18.9",
        "Pneumonia, unspecified organism",
    ),
    c(
        "68566005",
        "Urinary tract infectious disease (disorder)",
        true,
        "N39.0",
        "Urinary tract infection, site not specified",
    ),
    c(
        "186431008",
        "Clostridioides difficile infection (disorder)",
        true,
        "A04.72",
        "Enterocolitis due to Clostridium difficile, not specified as recurrent",
    ),
    c(
        "433202001",
        "Surgical site infection (disorder)",
        true,
        "T81.49XA",
        "Infection following a procedure, other surgical site, initial encounter",
    ),
    c(
        "44054006",
        "Diabetes mellitus type 2 (disorder)",
        false,
        "E11.9",
        "Type 2 diabetes mellitus without complications",
    ),
    c(
        "38341003",
        "Hypertensive disorder, systemic arterial (disorder)",
        false,
        "I10",
        "Essential (primary) hypertension",
    ),
    c(
        "195662009",
        "Acute viral pharyngitis (disorder)",
        false,
        "J02.9",
        "Acute pharyngitis, unspecified",
    ),
    c(
        "10509002",
        "Acute bronchitis (disorder)",
        false,
        "J20.9",
        "Acute bronchitis, unspecified",
    ),
    c(
        "49436004",
        "Atrial fibrillation (disorder)",
        false,
        "I48.91",
        "Unspecified atrial fibrillation",
    ),
    c(
        "22298006",
        "Myocardial infarction (disorder)",
        false,
        "I21.9",
        "Acute myocardial infarction, unspecified",
    ),
    c(
        "230690007",
        "Cerebrovascular accident (disorder)",
        false,
        "I63.9",
        "Cerebral infarction, unspecified",
    ),
    c(
        "84114007",
        "Heart failure (disorder)",
        false,
        "I50.9",
        "Heart failure, unspecified",
    ),
    c(
        "40055000",
        "Chronic sinusitis (disorder)",
        false,
        "J32.9",
        "Chronic sinusitis, unspecified",
    ),
];

pub const HAI_COUNT: usize = 5;
pub const SEPSIS: usize = 0;
pub const PNEUMONIA: usize = 1;
pub const URINARY_TRACT: usize = 2;
pub const DIABETES: usize = 5;
pub const HYPERTENSION: usize = 6;
pub const PHARYNGITIS: usize = 7;
pub const BRONCHITIS: usize = 8;
pub const AFIB: usize = 9;
pub const MI: usize = 10;
pub const CVA: usize = 11;
pub const HEART_FAILURE: usize = 12;
pub const SINUSITIS: usize = 13;

pub const CHRONIC: &[usize] = &[DIABETES, HYPERTENSION, AFIB, HEART_FAILURE, SINUSITIS];
pub const OUTPATIENT_ACUTE: &[usize] = &[PHARYNGITIS, BRONCHITIS];
/// Principal diagnoses of a stay, present on admission (two are HAI codes:
/// pneumonia/sepsis on admission must not count).
pub const PRINCIPAL: &[usize] = &[MI, CVA, HEART_FAILURE, PNEUMONIA, SEPSIS, AFIB];

/// Index of a SNOMED code in `CODES`.
pub fn code_index(code: &str) -> Option<usize> {
    CODES.iter().position(|c| c.code == code)
}

/// Encounter.type (SNOMED code, display).
pub const ENCOUNTER_TYPES: &[(&str, &str)] = &[
    ("32485007", "Hospital admission (procedure)"),
    ("183452005", "Emergency hospital admission (procedure)"),
    ("305408004", "Admission to surgical department (procedure)"),
    ("50849002", "Emergency room admission (procedure)"),
    ("185347001", "Encounter for problem (procedure)"),
    ("185349003", "Encounter for check up (procedure)"),
    ("162673000", "General examination of patient (procedure)"),
    ("185345009", "Encounter for symptom (procedure)"),
];
pub const INPATIENT_TYPES: &[usize] = &[0, 1, 2];
pub const EMERGENCY_TYPES: &[usize] = &[3, 4];
pub const AMBULATORY_TYPES: &[usize] = &[5, 6, 7];

/// hospitalization.dischargeDisposition (NUBC).
pub const DISCHARGE_DISPOSITIONS: &[(&str, &str)] = &[
    ("01", "Discharged to home or self care"),
    (
        "06",
        "Discharged/transferred to home under care of organized home health service",
    ),
    ("03", "Discharged/transferred to skilled nursing facility"),
    (
        "62",
        "Discharged/transferred to an inpatient rehabilitation facility",
    ),
    ("20", "Expired"),
    ("07", "Left against medical advice or discontinued care"),
];
pub const DISPOSITION_WEIGHTS: &[u32] = &[70, 12, 12, 6, 0, 3];
pub const EXPIRED: usize = 4;
pub const AGAINST_ADVICE: usize = 5;

pub struct State {
    pub code: &'static str,
    pub name: &'static str,
    pub cities: &'static [&'static str],
    pub zip_prefix: &'static str,
    /// Latitude/longitude of the state's centre in micro-degrees.
    pub lat: i64,
    pub lon: i64,
}

pub const STATES: &[State] = &[
    State {
        code: "MA",
        name: "Massachusetts",
        cities: &[
            "Boston",
            "Worcester",
            "Springfield",
            "Cambridge",
            "Lowell",
            "Brockton",
            "Quincy",
            "Lynn",
            "New Bedford",
            "Framingham",
        ],
        zip_prefix: "02",
        lat: 42_360_000,
        lon: -71_600_000,
    },
    State {
        code: "NY",
        name: "New York",
        cities: &[
            "Albany",
            "Buffalo",
            "Rochester",
            "Syracuse",
            "Yonkers",
            "Ithaca",
            "Utica",
            "Binghamton",
        ],
        zip_prefix: "12",
        lat: 42_650_000,
        lon: -75_500_000,
    },
    State {
        code: "IL",
        name: "Illinois",
        cities: &[
            "Chicago",
            "Aurora",
            "Naperville",
            "Joliet",
            "Rockford",
            "Peoria",
            "Elgin",
            "Champaign",
        ],
        zip_prefix: "60",
        lat: 40_630_000,
        lon: -89_400_000,
    },
    State {
        code: "TX",
        name: "Texas",
        cities: &[
            "Austin",
            "Houston",
            "Dallas",
            "San Antonio",
            "El Paso",
            "Lubbock",
            "Waco",
            "Plano",
        ],
        zip_prefix: "78",
        lat: 31_000_000,
        lon: -99_900_000,
    },
    State {
        code: "WA",
        name: "Washington",
        cities: &[
            "Seattle",
            "Spokane",
            "Tacoma",
            "Vancouver",
            "Bellevue",
            "Everett",
            "Yakima",
            "Olympia",
        ],
        zip_prefix: "98",
        lat: 47_400_000,
        lon: -120_700_000,
    },
    State {
        code: "GA",
        name: "Georgia",
        cities: &[
            "Atlanta", "Augusta", "Columbus", "Macon", "Savannah", "Athens", "Albany", "Roswell",
        ],
        zip_prefix: "30",
        lat: 32_600_000,
        lon: -83_400_000,
    },
];

pub const HOSPITAL_PREFIXES: &[&str] = &[
    "Saint Anne",
    "Mercy",
    "Riverside",
    "Lakeview",
    "Good Samaritan",
    "Saint Luke's",
    "Providence",
    "Valley",
    "Northshore",
    "Hillcrest",
    "Bayview",
    "Saint Joseph",
    "Pine Ridge",
    "Cedar Grove",
    "Harborview",
    "Summit",
    "Oak Park",
    "Maple Valley",
];
pub const HOSPITAL_SUFFIXES: &[&str] = &[
    "General Hospital",
    "Memorial Hospital",
    "Regional Medical Center",
    "Community Hospital",
    "University Hospital",
    "Medical Center",
];

pub const MALE_GIVEN: &[&str] = &[
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas",
    "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Steven", "Paul", "Andrew", "Joshua",
    "Kevin", "Brian", "George", "Edward", "Ronald", "Timothy", "Jason", "Jeffrey", "Ryan", "Jacob",
    "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott",
];
pub const FEMALE_GIVEN: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Dorothy",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Angela",
    "Shirley",
    "Anna",
    "Ruth",
];
pub const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "O'Connor",
    "Kuhlman",
    "Schaefer",
];
pub const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Walnut",
    "Sunset",
    "Lincoln",
    "Jackson",
    "Church",
    "River",
    "Highland",
    "Franklin",
    "Willow",
    "Chestnut",
    "Spring",
    "Meadow",
    "Ridge",
    "Harbor",
];
pub const STREET_SUFFIXES: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Boulevard",
];

/// (OMB code, display) for us-core-race.
pub const RACES: &[(&str, &str)] = &[
    ("2106-3", "White"),
    ("2054-5", "Black or African American"),
    ("2028-9", "Asian"),
    ("1002-5", "American Indian or Alaska Native"),
    ("2076-8", "Native Hawaiian or Other Pacific Islander"),
    ("2131-1", "Other Race"),
];
pub const RACE_WEIGHTS: &[u32] = &[62, 13, 6, 1, 1, 17];
pub const ETHNICITIES: &[(&str, &str)] = &[
    ("2186-5", "Not Hispanic or Latino"),
    ("2135-2", "Hispanic or Latino"),
];
/// (code, display) of v3-MaritalStatus.
pub const MARITAL: &[(&str, &str)] = &[
    ("M", "Married"),
    ("S", "Never Married"),
    ("D", "Divorced"),
    ("W", "Widowed"),
];
/// (BCP-47 code, display).
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en-US", "English (United States)"),
    ("es", "Spanish"),
    ("zh", "Chinese"),
    ("vi", "Vietnamese"),
    ("pt", "Portuguese"),
];
pub const LANGUAGE_WEIGHTS: &[u32] = &[82, 10, 3, 2, 3];

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(s: &str) -> bool {
        s.is_ascii() && !s.contains('"') && !s.contains('\\') && !s.chars().any(char::is_control)
    }

    #[test]
    fn every_string_is_json_safe() {
        let mut all: Vec<&str> = Vec::new();
        for c in CODES {
            all.extend([c.code, c.display, c.icd10, c.icd10_display]);
        }
        for (a, b) in ENCOUNTER_TYPES
            .iter()
            .chain(DISCHARGE_DISPOSITIONS)
            .chain(RACES)
            .chain(ETHNICITIES)
            .chain(MARITAL)
            .chain(LANGUAGES)
        {
            all.extend([*a, *b]);
        }
        for s in STATES {
            all.extend([s.code, s.name, s.zip_prefix]);
            all.extend(s.cities.iter().copied());
        }
        for list in [
            HOSPITAL_PREFIXES,
            HOSPITAL_SUFFIXES,
            MALE_GIVEN,
            FEMALE_GIVEN,
            FAMILY,
            STREETS,
            STREET_SUFFIXES,
        ] {
            all.extend(list.iter().copied());
        }
        for s in all {
            assert!(safe(s), "{s:?}");
        }
        assert!(CODES[..HAI_COUNT].iter().all(|c| c.hai));
        assert!(CODES[HAI_COUNT..].iter().all(|c| !c.hai));
        assert_eq!(DISCHARGE_DISPOSITIONS.len(), DISPOSITION_WEIGHTS.len());
        assert_eq!(RACES.len(), RACE_WEIGHTS.len());
        assert_eq!(LANGUAGES.len(), LANGUAGE_WEIGHTS.len());
        assert_eq!(DISCHARGE_DISPOSITIONS[EXPIRED].0, "20");
    }
}

// Package validation checks a hospital's data file before training: against
// a written expectations file, and with a screen for columns that look like
// personal data. It is pure: it reads an io.Reader and returns a [Report],
// and nothing in it sends anything anywhere.
//
// # Expectations file
//
// An expectations file is JSON, version 1, decoded strictly (unknown
// fields, trailing data and more than [MaxExpectationsBytes] are errors):
//
//	{
//	  "version": 1,
//	  "label": {"column": "diagnosis", "classes": [
//	    {"value": "B", "min_share": 0.52, "max_share": 0.73},
//	    {"value": "M", "min_share": 0.27, "max_share": 0.48}]},
//	  "ignore": ["id"],
//	  "columns": [
//	    {"name": "mean_radius", "type": "number", "min": 4.8, "max": 30.3, "max_missing": 0},
//	    {"name": "site", "type": "category", "values": ["left", "right"], "max_missing": 0.05}]
//	}
//
// Every column of the data file must be the label, a listed column or
// ignored: a column nobody described is a column nobody decided about. A new field that old readers could ignore safely may be
// added to version 1; anything else is version 2.
//
// # Rules
//
// [Check] reports, per column, [Finding]s with a [Rule], a [Severity], and
// counts: missing or unexpected columns, empty cells beyond max_missing,
// cells of a number column that are not finite numbers, numbers outside
// [min, max], category values not listed, labels that are empty or not a
// class, and class shares outside their bounds. All of these are errors.
// A finding holds counts and aggregates (the observed minimum and maximum,
// shares), never a cell value nor a row number, so a report can be shown
// and logged without disclosing a record. Cells are compared after
// trimming surrounding white space, as package dataset reads them.
//
// [Propose] writes the expectations a file meets, widened by [RangeMargin],
// [MissingMargin] and [BalanceMargin], for a person to review.
//
// # PII screen
//
// Every column, ignored ones included, is screened from its name and from
// its first [PIISampleRows] rows. A hit on a column that would be trained
// on is an error, and [Propose] refuses to describe it (a *[PIIError]); on
// an ignored column it is a warning. The screen is a heuristic that catches
// the usual ways identifying data ends up in an export; it is not a
// guarantee. It does not recognise single-word names, free text shorter
// than [PIIFreeTextWords] words, identifiers of fewer than 9 digits under
// a neutral column name (a row number, say), nor quasi-identifiers such as
// age with rare diagnoses; people must still decide what a file may hold.
//
// Column names are split into lower-case words ("patientEmail" → patient,
// email; "e-mail" also as email) and each word is looked up:
//
//   - name: name, firstname, lastname, surname, forename, fullname, initials, maiden
//   - identifier: id, ssn, bsn, nhs, mrn, nino, passport, identifier, uuid, sofinummer
//   - phone: phone, telephone, tel, mobile, fax
//   - email: email, mail
//   - address: address, addr, street, postcode, zipcode, zip, postal, city, residence, straat, woonplaats
//   - date_of_birth: dob, birth, birthdate, birthday, born, geboortedatum
//   - free_text: notes, note, comment(s), remarks, narrative, freetext
//
// Each non-empty sampled value is matched against the patterns below, the
// first that matches wins. A value that is an ordinary number
// (dataset.ParseNumber) matches nothing, except 9 or more plain digits.
//
//   - identifier: 9 or more digits (Dutch BSN has 9, UK NHS 10), NHS style
//     "ddd ddd dddd", US SSN "ddd-dd-dddd"
//   - email: local@domain.tld
//   - date_of_birth: date-like values: 1980-01-31 (optionally with a time),
//     31/01/1980, 31.1.80, 31 Jan 1980, Jan 31, 1980
//   - address: a house number with a street word or suffix ("12 High Street",
//     "Kerkstraat 12a"), UK and Dutch postcodes, US ZIP+4
//   - phone: 7 to 20 characters of digits, spaces and ( ) . - /, optionally
//     after +, with 7 to 15 digits
//   - name: 2 to 5 capitalised words or initials ("Ann van der Berg",
//     "Smith, J."), with particles such as van and de allowed in lower case
//   - free_text: at least [PIIFreeTextWords] words with letters
//
// A column is flagged for a precise kind (identifier, email,
// date_of_birth, address, phone) when at least [PIIPatternShare] of its
// non-empty sampled values match, and for name or free_text when at least
// [PIIFuzzyShare] match; names must moreover be at least [PIINameDistinct]
// distinct, since a category ("Left Breast") repeats and a name seldom does.
//
// # Limits
//
// Input is bounded like package dataset's: [MaxBytes], [MaxLineBytes],
// [MaxRows], plus [MaxColumns], [MaxCellBytes] and [MaxCells]. A file over a
// limit or not well-formed is an error (ErrTooLarge, ErrCSV, ErrEmpty),
// never a partial report. Memory use is bounded by the number of columns,
// not of rows.
package validation

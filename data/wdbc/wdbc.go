// Package wdbc ships the Wisconsin Diagnostic Breast Cancer data set (569 patients,
// 30 numeric features, benign/malignant diagnosis) so that tests, the simulator and
// the demo have a realistic, small, license-clean hospital table without a download.
//
// # Attribution
//
// UCI Machine Learning Repository, "Breast Cancer Wisconsin (Diagnostic)",
// W.H. Wolberg, W.N. Street, O.L. Mangasarian (1995), licensed CC BY 4.0. Anything that
// redistributes [CSV] must keep [Attribution]; see README.md in this folder.
//
// # Layout
//
// The CSV has a header row; columns are [IDColumn] (row number 1..569), thirty
// numeric feature columns (mean_*, se_*, worst_*), and [Label] last.
package wdbc

import _ "embed"

// CSV is the raw wdbc.csv file, header included, embedded so readers need no path.
//
//go:embed wdbc.csv
var CSV []byte

// Label is the name of the diagnosis column ("B" benign, "M" malignant).
const Label = "diagnosis"

// IDColumn is the name of the row-number column; it carries no signal and must be
// ignored when reading features.
const IDColumn = "id"

// Attribution is the CC BY 4.0 credit line that must accompany any copy of the data.
const Attribution = `Breast Cancer Wisconsin (Diagnostic), UCI Machine Learning Repository; W.H. Wolberg, W.N. Street, O.L. Mangasarian (1995); CC BY 4.0`

// Classes returns the diagnosis labels in class-index order (0 = "B", 1 = "M"), the
// order every party must use when encoding labels so class indices agree.
func Classes() []string { return []string{"B", "M"} }

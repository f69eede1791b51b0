// Package archtest holds no code: its test keeps fedguard's import graph
// pointing one way. The layer table in archtest_test.go gives every folder
// of the module a layer; a package may import its own layer and the layers
// below it, never one above. docs/architecture.md explains the layers.
package archtest

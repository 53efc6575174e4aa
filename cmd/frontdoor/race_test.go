//go:build race

package main

// raceBuild is true when the tests run with -race; the daemon under test is
// then built with -race too, so a data race in a reload fails the test.
const raceBuild = true

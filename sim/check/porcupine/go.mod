module detcd.invalid/porcupine-kv

go 1.19

// Measured at porcupine 55508eb (after v1.3.0, with state hashing); offline, point it at a
// checkout: go mod edit -replace github.com/anishathalye/porcupine=/path/to/porcupine
require github.com/anishathalye/porcupine v1.3.0

"""The bottom layer: what a result is (metric names, histograms, the versioned file, the
environment it was measured in) and how it is stored and formatted. It imports nothing else of
`bench`, so every other package can read and write results without import cycles."""

"""The embedded default: one SQLite file holding runs, results, definitions and the
local scheduler's deliveries."""

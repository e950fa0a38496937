"""How far to trust a score: agreement with people and with other judges, pairwise verdicts, rankings with
their uncertainty, probes and drift (README: "How far to trust a score")."""

"""Drop-in reward functions for RL trainers, one module per trainer, all talking to ``editjudge serve``.

- :mod:`editjudge.integrations.flow_grpo`: Flow-GRPO's ``multi_score`` table entry and reward function.
- :mod:`editjudge.integrations.verl_omni`: verl-omni's ``compute_score``.
- :mod:`editjudge.integrations.editscore`: EditScore's ``evaluate`` / ``batch_evaluate`` call shape.
- :mod:`editjudge.integrations.unirl`: UniRL's reward-service wire format, translated and served.

They are configured by environment variables a launcher sets (see :mod:`editjudge.integrations.env`).
"""

"""airtune on Flower (``pip install airtune[flower]``): the only package that imports ``flwr``.

The seam is :meth:`airtune.training.engine.Engine.run`. The ServerApp runs airtune's own round
loop (planner, channel, outage, accounting, aggregation, evaluation, checkpoints, ``--resume``)
with a :class:`~airtune.flower.grid_engine.GridEngine` that sends the round's client tasks to
Flower nodes and decodes their replies; each node's ClientApp trains them with an ordinary
:class:`~airtune.training.engine.Engine` over one lazily built shared base model.

Modules: ``placement`` (which node hosts which devices; no flwr), ``codec`` (tasks and updates
<-> Flower records), ``handshake`` (version and config check, device map), ``grid_engine``,
``client_app``, ``server_app``, ``app_files`` (writes the Flower app; no flwr), ``submit``
(``airtune flower run``: submit and follow a run through the ``flwr`` CLI; no flwr import).
"""

"""Model execution: worker processes (or threads) that hold the networks, and the pool that feeds them.

Data flows one way: :class:`app.engine.Engine` -> :mod:`.pool` (admission, queues, micro-batches) ->
:mod:`.transport` (a pipe or a thread) -> :mod:`.worker` (jobs) -> :mod:`.runners` (one per task: batching,
padding, per-session state, with :mod:`.states` stacking the states of sessions stepped together). Around it:
:mod:`.supervisor` starts and replaces workers, :mod:`.batching` holds the batching rules, and
:mod:`.sessions` is the event loop's handle on a stream resident in a worker.
"""

-- `ecom up` restarts a part of the stack that died, and gives up on a crash loop: each restart is
-- a `stack_restart` WARNING, giving up an ERROR (ecom_assets/stack/healing.py).

ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_kind_valid;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_valid CHECK (
    kind IN ('low_validity', 'high_latency', 'error_concentration', 'run_failure',
             'high_warning_rate', 'stack_restart'));

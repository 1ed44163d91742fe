-- The lifecycle job finds members with lots still marked pending after their activation date.
-- Partial, so it holds only pending lots and costs nothing once a lot is activated.
CREATE INDEX ix_point_lots_pending ON point_lots (available_at, member_id) WHERE status = 'pending';

-- A receipt's lines are kept on the purchase as one JSON document instead of a row each
-- (see db/postgres/0007). SQLite cannot drop a column default without rebuilding the table,
-- so '[]' stays as the default here; the service always writes the column.
ALTER TABLE purchases ADD COLUMN lines_json TEXT NOT NULL DEFAULT '[]';
UPDATE purchases
SET lines_json = (
    SELECT json_group_array(json_object('lineNo', line_no, 'sku', sku, 'category', category, 'quantity', quantity,
           'amountMinor', amount_minor, 'refundedQuantity', refunded_quantity, 'refundedMinor', refunded_minor))
    FROM (SELECT * FROM purchase_lines WHERE purchase_lines.purchase_id = purchases.id ORDER BY line_no)
)
WHERE EXISTS (SELECT 1 FROM purchase_lines WHERE purchase_lines.purchase_id = purchases.id);
DROP TABLE purchase_lines;

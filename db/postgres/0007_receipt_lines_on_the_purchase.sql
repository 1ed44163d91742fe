-- A receipt's lines are kept on the purchase as one JSON document instead of a row each.
--
-- Nothing reads a line on its own: the purchase writes them all at once and a refund by lines reads and
-- rewrites them all under the member's lock, in the same UPDATE of the purchase it already makes. A row
-- per line cost every checkout a statement, a heap tuple and a primary-key entry per line (about six WAL
-- records of the 22 a purchase wrote in the bench's mix). Each element of the array:
--   {"lineNo", "sku", "category", "quantity", "amountMinor", "refundedQuantity", "refundedMinor"}
-- with amounts in minor units. The UPDATE rewrites every purchase that has lines: on a large program,
-- run it in a quiet hour.
ALTER TABLE purchases ADD COLUMN lines_json text NOT NULL DEFAULT '[]';
UPDATE purchases
SET lines_json = l.doc
FROM (
    SELECT purchase_id,
           json_agg(json_build_object('lineNo', line_no, 'sku', sku, 'category', category, 'quantity', quantity,
                    'amountMinor', amount_minor, 'refundedQuantity', refunded_quantity, 'refundedMinor', refunded_minor)
                    ORDER BY line_no)::text AS doc
    FROM purchase_lines
    GROUP BY purchase_id
) AS l
WHERE l.purchase_id = purchases.id;
-- Every purchase names its lines from now on; the default only filled the rows that were there.
ALTER TABLE purchases ALTER COLUMN lines_json DROP DEFAULT;
DROP TABLE purchase_lines;

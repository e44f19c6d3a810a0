-- epoch starts a new epoch when the table's epoch is still the one the
-- node knows: the node saw Redis's clock step (or change hosts), so no
-- stored age can be trusted. It runs with the prelude on a placeholder k.
-- ARGV: the table's four.
if epoch == known_e then new_epoch(true) end
return result(1, '', '', '', -1, 0, false)

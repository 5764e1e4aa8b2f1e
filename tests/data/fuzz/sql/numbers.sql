SELECT 8675309, -4.5e10, 0x1F2E, .5, 1_000_000, 0o17, 0b1011, 6.02E+23, 31415.926 FROM stream_positions WHERE stream_id >= -99887 AND instance_name = 'event_persister1'

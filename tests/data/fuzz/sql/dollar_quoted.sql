SELECT $$dollar secret with 'quotes' and ; semicolon$$ AS a, $tok$syt_dollarTagged_Zq9$ nested $x$ inside$tok$ AS b FROM room_aliases WHERE room_alias = $$#lobby:example.org$$

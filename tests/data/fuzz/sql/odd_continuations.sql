SELECT 'a'

  -- c
  'b' 'c'
'd
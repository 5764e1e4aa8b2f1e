SELECT media_id FROM local_media_repository WHERE upload_name = 'first part of a long name '
    'continued after a newline Lq7'
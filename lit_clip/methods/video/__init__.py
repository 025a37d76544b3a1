"""Video methods: CLIP4Clip (text-video retrieval), ActionCLIP (action recognition as video-text matching) and
VideoCLIP (video-text pretraining on timed captions)."""

"""Face pipeline: read photos, detect faces and landmarks, similarity-align, crop for every model family."""
from agekit.face.align import FACE5_TEMPLATE, face_frame, umeyama
from agekit.face.crops import lmtcnn_ten_views, make_crops
from agekit.face.detect import DETECTORS, Detection, Detector, get_detector
from agekit.face.io import ImageReadError, read_image
from agekit.face.pipeline import Face, FacePipeline, FaceResult

__all__ = [
    "DETECTORS",
    "FACE5_TEMPLATE",
    "Detection",
    "Detector",
    "Face",
    "FacePipeline",
    "FaceResult",
    "ImageReadError",
    "face_frame",
    "get_detector",
    "lmtcnn_ten_views",
    "make_crops",
    "read_image",
    "umeyama",
]

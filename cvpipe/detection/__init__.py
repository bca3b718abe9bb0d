"""Object detection (COCO, LabelImg/VOC) with ultralytics YOLO on a converted YOLO folder: data (the folder read
back, the training mirror), fit, evaluate (mAP50-95 by metrics and pycocotools), the ultralytics adapter, MLflow model."""

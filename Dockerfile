# One image for every process of the stack (web, realtime, worker, beat).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=false SECRET_KEY=build WR_SECRETS_KEYS=YnVpbGQtb25seS1rZXktYnVpbGQtb25seS1rZXktISE= \
    python manage.py collectstatic --noinput
EXPOSE 8000 8001

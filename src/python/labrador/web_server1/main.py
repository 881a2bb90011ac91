from labrador.serve import serve
from labrador.web_server1.app import create_app

if __name__ == "__main__":
    serve(create_app)
